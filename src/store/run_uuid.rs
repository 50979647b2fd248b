//! A run's universally unique id (`run_uuid`): a random UUID version 4, as lowercase
//! hyphenated text, the format migration V7 gives existing runs.

/// A new random run uuid (UUID version 4: 122 random bits from the operating system).
pub(crate) fn new_run_uuid() -> rusqlite::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// True when `text` is a run uuid as tracing-energy writes them: lowercase hyphenated
/// UUID version 4 text, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx` with `y` one of `89ab`.
pub fn is_run_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
        && b[14] == b'4'
        && b"89ab".contains(&b[19])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uuids_are_version_4_and_differ() {
        let a = new_run_uuid().unwrap();
        let b = new_run_uuid().unwrap();
        assert!(is_run_uuid(&a) && is_run_uuid(&b), "{a} {b}");
        assert_ne!(a, b);
        assert!(!is_run_uuid("0123456789abcdef0123456789abcdef"));
        assert!(!is_run_uuid(&a.to_uppercase()));
    }
}
