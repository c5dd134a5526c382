//! The ring: live members -> partition -> replica list, and its digest. Pure.
