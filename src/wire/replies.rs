//! Reading a run of server messages the proxy asked for itself (a query of its own on a
//! session, whose replies the client never sees).

use super::fields::ErrorFields;

/// The messages in `bytes`, whole ones only: a cut last message is left out.
pub fn messages(mut bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = bytes.split_first()?;
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let body = rest.get(4..len).filter(|_| len >= 4)?;
        bytes = rest.get(len..)?;
        Some((tag, body))
    })
}

/// A BackendKeyData body: the backend's pid and its cancel secret (4 bytes before protocol
/// 3.2, longer after).
pub fn backend_key_data(body: &[u8]) -> Option<(i32, &[u8])> {
    let pid = super::be::i32_at(body, 0)?;
    Some((pid, body.get(4..).filter(|secret| !secret.is_empty())?))
}

/// The first column of a DataRow body, as text (None: NULL or malformed).
pub fn first_column(body: &[u8]) -> Option<String> {
    let value = (*data_row(body)?.first()?)?;
    Some(String::from_utf8_lossy(value).into_owned())
}

/// The columns of a DataRow body (None: NULL); None if the body is malformed.
pub fn data_row(body: &[u8]) -> Option<Row<'_>> {
    let count = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut rest = body.get(2..)?;
    let mut values = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = rest.get(4..)?;
        if len < 0 {
            values.push(None);
        } else {
            let len = len as usize;
            values.push(Some(rest.get(..len)?));
            rest = rest.get(len..)?;
        }
    }
    rest.is_empty().then_some(values)
}

/// One DataRow's columns (None: NULL).
pub type Row<'a> = Vec<Option<&'a [u8]>>;

/// The rows of a reply, or the server's error (SQLSTATE and message) if it failed.
pub fn rows(bytes: &[u8]) -> Result<Vec<Row<'_>>, (String, String)> {
    let mut rows = Vec::new();
    for (tag, body) in messages(bytes) {
        match tag {
            b'D' => rows.extend(data_row(body)),
            b'E' => {
                let fields = ErrorFields::parse(body);
                return Err((
                    fields.get(b'C').unwrap_or("XX000").to_owned(),
                    fields.get(b'M').unwrap_or("error").to_owned(),
                ));
            }
            _ => {}
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn reads_rows_and_skips_a_cut_tail() {
        let mut bytes = msg(b'1', b"");
        bytes.extend(msg(b'D', b"\x00\x02\x00\x00\x00\x01a\xff\xff\xff\xff"));
        bytes.extend(msg(b'C', b"SELECT 1\0"));
        bytes.extend(&msg(b'Z', b"I")[..3]);
        let rows = rows(&bytes).unwrap();
        assert_eq!(rows, vec![vec![Some(&b"a"[..]), None]]);
        assert_eq!(messages(&bytes).count(), 3);
    }

    #[test]
    fn an_error_is_reported() {
        let bytes = msg(b'E', b"SERROR\0C57014\0Mcanceling statement\0\0");
        assert_eq!(
            rows(&bytes),
            Err(("57014".into(), "canceling statement".into()))
        );
    }

    #[test]
    fn backend_keys_and_first_columns() {
        assert_eq!(
            backend_key_data(&[0, 0, 0, 7, 1, 2, 3, 4]),
            Some((7, &[1u8, 2, 3, 4][..]))
        );
        assert_eq!(backend_key_data(&[0, 0, 0, 7]), None);
        assert_eq!(
            first_column(b"\x00\x01\x00\x00\x00\x02ab").as_deref(),
            Some("ab")
        );
        assert_eq!(first_column(b"\x00\x01\xff\xff\xff\xff"), None);
        assert_eq!(first_column(b"\x00\x01\x00\x00\x00\x09ab"), None);
    }

    #[test]
    fn malformed_rows_are_refused() {
        assert_eq!(data_row(b"\x00\x01\x00\x00\x00\x05ab"), None);
        assert_eq!(data_row(b"\x00\x01\x00\x00\x00\x01ab"), None);
        assert_eq!(data_row(b"\x00"), None);
        assert_eq!(messages(b"D\x00\x00\x00\x02").count(), 0);
    }
}
