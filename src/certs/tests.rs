//! Unit tests of the CA and node certificates.

use std::fs;
use std::net::IpAddr;

use super::*;
use time::OffsetDateTime;

/// A CA in a fresh temporary directory.
fn ca_dir() -> (tempfile::TempDir, CaPaths) {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = init_ca(dir.path(), "test-cluster", false).expect("init ca");
    (dir, paths)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn private_keys_are_written_owner_only() {
    let (dir, ca) = ca_dir();
    assert_eq!(mode(&ca.key), 0o600);
    let node = issue_node(dir.path(), "node-1", &[], &[], 365).expect("issue");
    assert_eq!(mode(&node.key), 0o600);
}

#[cfg(unix)]
#[test]
fn overwriting_a_key_with_wide_permissions_narrows_them() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _) = ca_dir();
    let key = dir.path().join("node-1.key");
    fs::write(&key, "old").expect("write");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    issue_node(dir.path(), "node-1", &[], &[], 365).expect("issue");
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca_without_force() {
    let (dir, ca) = ca_dir();
    let before = fs::read_to_string(&ca.cert).expect("read");
    let err = init_ca(dir.path(), "other", false).expect_err("must refuse");
    assert!(matches!(err, CertError::Exists(_)), "{err}");
    assert_eq!(fs::read_to_string(&ca.cert).expect("read"), before);
    init_ca(dir.path(), "other", true).expect("force overwrites");
    assert_ne!(fs::read_to_string(&ca.cert).expect("read"), before);
}

#[test]
fn ca_carries_the_cluster_name_and_ten_years() {
    let (dir, _) = ca_dir();
    let entries = list(dir.path()).expect("list");
    let ca = entries.iter().find(|e| e.is_ca).expect("ca listed");
    assert!(ca.subject.contains("test-cluster"), "{}", ca.subject);
    let years = (ca.not_after - ca.not_before) as f64 / (365.25 * 86_400.0);
    assert!((9.9..10.1).contains(&years), "{years}");
}

#[test]
fn issued_certificate_chains_to_its_ca() {
    let (dir, ca) = ca_dir();
    let node = issue_node(dir.path(), "node-1", &[], &[], 365).expect("issue");
    let tls = load_node_tls(&ca.cert, &node.cert, &node.key).expect("trusted");
    assert_eq!(tls.name.as_str(), "node-1");
    assert_eq!(tls.chain.len(), 1);
}

#[test]
fn certificate_from_another_ca_is_not_trusted() {
    let (dir, _) = ca_dir();
    let (other, other_ca) = ca_dir();
    let node = issue_node(dir.path(), "node-1", &[], &[], 365).expect("issue");
    let err = load_node_tls(&other_ca.cert, &node.cert, &node.key).expect_err("foreign CA");
    assert!(matches!(err, CertError::NotTrusted(_)), "{err}");
    drop(other);
}

#[test]
fn node_certificate_carries_name_ips_and_dns_sans() {
    let (dir, _) = ca_dir();
    let ips: Vec<IpAddr> = vec!["10.0.0.7".parse().expect("ip"), "::1".parse().expect("ip")];
    let dns = vec!["cache.example.com".to_owned()];
    issue_node(dir.path(), "node-7", &ips, &dns, 365).expect("issue");
    let entries = list(dir.path()).expect("list");
    let node = entries.iter().find(|e| !e.is_ca).expect("node listed");
    assert_eq!(
        node.dns,
        vec!["node-7".to_owned(), "cache.example.com".to_owned()]
    );
    assert_eq!(node.ips, ips);
    assert!(node.subject.contains("node-7"));
}

#[test]
fn node_certificate_is_valid_for_the_days_asked() {
    let (dir, _) = ca_dir();
    issue_node(dir.path(), "node-1", &[], &[], 365).expect("issue");
    let entries = list(dir.path()).expect("list");
    let node = entries.iter().find(|e| !e.is_ca).expect("node listed");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!(node.not_before <= now);
    let days = (node.not_after - now) as f64 / 86_400.0;
    assert!((364.9..365.1).contains(&days), "{days}");
}

#[test]
fn invalid_node_names_are_refused() {
    let (dir, _) = ca_dir();
    for bad in [
        "", "a b", "../x", "node_1", "-node", "a..b", "1.2.3.4", "nœud",
    ] {
        let err = issue_node(dir.path(), bad, &[], &[], 365).expect_err(bad);
        assert!(matches!(err, CertError::InvalidName(_)), "{bad}: {err}");
    }
    let err = issue_node(dir.path(), "ok", &[], &["bad name".into()], 365).expect_err("dns");
    assert!(matches!(err, CertError::InvalidName(_)));
}

#[test]
fn zero_day_validity_is_refused() {
    let (dir, _) = ca_dir();
    let err = issue_node(dir.path(), "node-1", &[], &[], 0).expect_err("zero days");
    assert!(matches!(err, CertError::InvalidValidity));
}

#[test]
fn issuing_without_a_ca_reports_the_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = issue_node(dir.path(), "node-1", &[], &[], 365).expect_err("no ca");
    assert!(matches!(err, CertError::Io { .. }), "{err}");
}

#[test]
fn garbage_pem_is_an_error_not_a_panic() {
    let pki = TestPki::new("c").expect("pki");
    let err = NodeTls::from_pem(pki.ca_pem(), "not pem", "nor this").expect_err("garbage");
    assert!(matches!(err, CertError::Pem { .. }), "{err}");
}

#[test]
fn test_pki_issues_trusted_node_material() {
    let pki = TestPki::new("c").expect("pki");
    let tls = pki.node("node-a").expect("node");
    assert_eq!(tls.name.as_str(), "node-a");
    assert_eq!(
        node_name_of(&tls.chain[0]).expect("name").as_str(),
        "node-a"
    );
}

#[test]
fn test_pki_ca_written_to_disk_can_issue() {
    let pki = TestPki::new("c").expect("pki");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki.write_ca(dir.path()).expect("write");
    let node = issue_node(dir.path(), "n1", &[], &[], 30).expect("issue");
    load_node_tls(&ca.cert, &node.cert, &node.key).expect("trusted");
}
