//! Glob matching with Redis's `stringmatchlen` semantics, on bytes: `*`,
//! `?`, `[abc]`, `[^a-z]`, ranges in either order, `\` escapes (also inside
//! classes), optional ASCII case folding. Used by KEYS, SCAN MATCH and
//! CONFIG GET.

/// Whether `s` matches `pattern`. Runs in O(len(pattern) * len(s)) at worst
/// (one backtrack point per `*`, never exponential).
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after the star, string index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                star = Some((p, i));
                continue;
            }
            if i < s.len()
                && let Some(next) = match_one(pattern, p, s[i], nocase)
            {
                p = next;
                i += 1;
                continue;
            }
        } else if i == s.len() {
            return true;
        }
        // Mismatch: let the last star swallow one more byte.
        match star {
            Some((sp, si)) if si < s.len() => {
                star = Some((sp, si + 1));
                p = sp;
                i = si + 1;
            }
            _ => return false,
        }
    }
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// Match one pattern token at `p` (not `*`) against byte `c`; on success the
/// index of the next token.
fn match_one(pattern: &[u8], p: usize, c: u8, nocase: bool) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'[' => match_class(pattern, p + 1, c, nocase),
        b'\\' if p + 1 < pattern.len() => eq(pattern[p + 1], c, nocase).then_some(p + 2),
        other => eq(other, c, nocase).then_some(p + 1),
    }
}

/// A `[...]` class starting after `[` at `p`. An unterminated class ends at
/// the end of the pattern, as in Redis.
fn match_class(pattern: &[u8], mut p: usize, c: u8, nocase: bool) -> Option<usize> {
    let not = pattern.get(p) == Some(&b'^');
    if not {
        p += 1;
    }
    let mut matched = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            matched |= eq(pattern[p + 1], c, nocase);
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' {
            let (mut lo, mut hi) = (pattern[p], pattern[p + 2]);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            let cc = if nocase { c.to_ascii_lowercase() } else { c };
            if nocase {
                lo = lo.to_ascii_lowercase();
                hi = hi.to_ascii_lowercase();
            }
            matched |= (lo..=hi).contains(&cc);
            p += 3;
        } else {
            matched |= eq(pattern[p], c, nocase);
            p += 1;
        }
    }
    // Skip the closing bracket when there is one.
    let next = if p < pattern.len() { p + 1 } else { p };
    (matched != not).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_redis_glob_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h*llo", "hello!", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[\\]]", "]", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            (
                "*a*a*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("user:*", "user:1", true),
            ("user:*", "users", false),
            ("[abc", "a", true),
            ("", "", true),
            ("", "a", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(
                glob_match(p.as_bytes(), s.as_bytes(), false),
                *want,
                "{p} vs {s}"
            );
        }
    }

    #[test]
    fn nocase_folds_ascii() {
        assert!(glob_match(b"MAXMEMORY*", b"maxmemory-policy", true));
        assert!(!glob_match(b"MAXMEMORY*", b"maxmemory-policy", false));
        assert!(glob_match(b"[A-C]x", b"bx", true));
    }
}
