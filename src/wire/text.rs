//! Text in a session's client_encoding. The proxy's own replies must reach a client in the
//! encoding it asked for; UTF-8 and LATIN1 are exact, other encodings get ASCII with `?`.

/// Encodes `s` for a client whose client_encoding is `encoding`.
pub fn encode(s: &str, encoding: &str) -> Vec<u8> {
    match normalize(encoding).as_str() {
        "UTF8" | "UNICODE" | "SQLASCII" => s.as_bytes().to_vec(),
        "LATIN1" | "ISO88591" => s
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect(),
        _ => s
            .chars()
            .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
            .collect(),
    }
}

/// Decodes bytes a session sent in `encoding`.
pub fn decode(b: &[u8], encoding: &str) -> String {
    match normalize(encoding).as_str() {
        "LATIN1" | "ISO88591" => b.iter().map(|&c| char::from(c)).collect(),
        _ => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Re-encodes text from one client encoding to another.
pub fn transcode(b: &[u8], from: &str, to: &str) -> Vec<u8> {
    if normalize(from) == normalize(to) {
        return b.to_vec();
    }
    encode(&decode(b, from), to)
}

fn normalize(e: &str) -> String {
    e.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_round_trip() {
        let b = encode("é ß €", "LATIN1");
        assert_eq!(b, vec![0xe9, b' ', 0xdf, b' ', b'?']);
        assert_eq!(decode(&b[..3], "latin1"), "é ß");
        assert_eq!(transcode("é".as_bytes(), "UTF8", "LATIN1"), vec![0xe9]);
    }
}
