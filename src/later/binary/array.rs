//! Arrays: text is array_out's (`{1,NULL,"a b"}`, nested braces for more dimensions,
//! `[0:2]=` in front when a lower bound is not 1); binary is array_send's: int32 ndim,
//! int32 has-nulls flag, uint32 element type, per dimension int32 length and int32 lower
//! bound, then every element (row-major) as int32 length (-1 for NULL) and its bytes.
//!
//! Elements are converted with the element type's own rule. Element text is unescaped
//! byte-wise (the delimiter is ',' for every supported type); quoting uses `"` and `\`.

use super::{ConvertError, TextStyle, scalar_to_binary};
use bytes::{BufMut, BytesMut};

/// PostgreSQL's MAXDIM.
const MAXDIM: usize = 6;

/// One parsed element: `None` for NULL, else its unescaped text.
type Element = Option<Vec<u8>>;

struct Parser<'t> {
    text: &'t [u8],
    pos: usize,
    /// Number of dimensions, fixed by the depth of the first element.
    ndim: Option<usize>,
    /// Length of each dimension, fixed by the first sub-array seen at that depth.
    dims: [Option<usize>; MAXDIM],
    elements: Vec<Element>,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_array_space) {
            self.pos += 1;
        }
    }

    /// One `{...}` at `depth` (0 for the outermost); `pos` is at the `{`.
    fn level(&mut self, depth: usize) -> Option<()> {
        if depth >= MAXDIM || self.peek() != Some(b'{') {
            return None;
        }
        self.pos += 1;
        self.skip_space();
        if self.peek() == Some(b'}') {
            // Only the whole array may be empty.
            self.pos += 1;
            return (depth == 0 && self.ndim.is_none()).then_some(());
        }
        let mut count = 0;
        loop {
            self.skip_space();
            if self.peek() == Some(b'{') {
                if self.ndim.is_some_and(|n| depth + 1 >= n) {
                    return None;
                }
                self.level(depth + 1)?;
            } else {
                match self.ndim {
                    None => self.ndim = Some(depth + 1),
                    Some(n) if n == depth + 1 => {}
                    Some(_) => return None,
                }
                let e = self.element()?;
                self.elements.push(e);
            }
            count += 1;
            self.skip_space();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        let dim = self.dims.get_mut(depth)?;
        match *dim {
            None => *dim = Some(count),
            Some(n) if n == count => {}
            Some(_) => return None,
        }
        Some(())
    }

    /// A quoted or unquoted element; `pos` is at its first character.
    fn element(&mut self) -> Option<Element> {
        let mut value = Vec::new();
        if self.peek() == Some(b'"') {
            self.pos += 1;
            loop {
                match self.peek()? {
                    b'"' => {
                        self.pos += 1;
                        return Some(Some(value));
                    }
                    b'\\' => {
                        value.push(*self.text.get(self.pos + 1)?);
                        self.pos += 2;
                    }
                    c => {
                        value.push(c);
                        self.pos += 1;
                    }
                }
            }
        }
        // Unquoted: up to ',' or '}'; trailing unescaped spaces are not part of it.
        let mut escaped = false;
        let mut keep = 0;
        loop {
            match self.peek()? {
                b',' | b'}' => break,
                b'{' | b'"' => return None,
                b'\\' => {
                    value.push(*self.text.get(self.pos + 1)?);
                    self.pos += 2;
                    escaped = true;
                    keep = value.len();
                }
                c => {
                    value.push(c);
                    self.pos += 1;
                    if !is_array_space(c) {
                        keep = value.len();
                    }
                }
            }
        }
        value.truncate(keep);
        if value.is_empty() {
            return None;
        }
        if !escaped && value.eq_ignore_ascii_case(b"NULL") {
            return Some(None);
        }
        Some(Some(value))
    }
}

/// array_isspace
fn is_array_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// (lower, upper) bound of each dimension.
type Bounds = Vec<(i64, i64)>;

/// `[lb:ub][lb:ub]=` in front of the braces: the bounds, and the text after them.
fn dimension_decoration(text: &[u8]) -> Option<(Bounds, &[u8])> {
    let mut rest = text;
    let mut bounds = Vec::new();
    while let Some(r) = rest.strip_prefix(b"[") {
        let close = r.iter().position(|&c| c == b']')?;
        let (inner, after) = r.split_at(close);
        let inner = std::str::from_utf8(inner).ok()?;
        let (lb, ub) = inner.split_once(':')?;
        let parse = |s: &str| super::scalar::parse_i64(s).filter(|v| i32::try_from(*v).is_ok());
        bounds.push((parse(lb)?, parse(ub)?));
        rest = after.get(1..)?;
    }
    if bounds.is_empty() {
        return Some((bounds, text));
    }
    Some((bounds, rest.strip_prefix(b"=")?))
}

pub fn to_binary(
    array_oid: u32,
    elem_oid: u32,
    text: &[u8],
    style: &TextStyle,
    out: &mut BytesMut,
) -> Result<(), ConvertError> {
    let bad = |why: &str| ConvertError::malformed(array_oid, why.to_string());
    let (bounds, body) = dimension_decoration(text).ok_or_else(|| bad("bad dimensions"))?;
    let mut p = Parser {
        text: body,
        pos: 0,
        ndim: None,
        dims: [None; MAXDIM],
        elements: Vec::new(),
    };
    p.level(0).ok_or_else(|| bad("not an array literal"))?;
    p.skip_space();
    if p.pos != body.len() {
        return Err(bad("junk after the array"));
    }
    let ndim = p.ndim.unwrap_or(0);
    let lengths: Vec<usize> = p.dims.iter().take(ndim).map(|d| d.unwrap_or(0)).collect();
    let lower: Vec<i64> = if bounds.is_empty() {
        vec![1; ndim]
    } else {
        let matches = bounds.len() == ndim
            && bounds
                .iter()
                .zip(&lengths)
                .all(|((lb, ub), len)| ub - lb + 1 == *len as i64);
        if !matches {
            return Err(bad("dimensions do not match the elements"));
        }
        bounds.iter().map(|(lb, _)| *lb).collect()
    };

    out.put_i32(ndim as i32);
    out.put_i32(i32::from(p.elements.iter().any(Option::is_none)));
    out.put_u32(elem_oid);
    for (len, lb) in lengths.iter().zip(&lower) {
        let len = i32::try_from(*len).map_err(|_| bad("too many elements"))?;
        out.put_i32(len);
        out.put_i32(*lb as i32);
    }
    for e in &p.elements {
        match e {
            None => out.put_i32(-1),
            Some(v) => {
                let at = out.len();
                out.put_i32(0);
                scalar_to_binary(elem_oid, v, style, out)?;
                let n = u32::try_from(out.len() - at - 4)
                    .ok()
                    .filter(|n| i32::try_from(*n).is_ok())
                    .ok_or_else(|| bad("element too large"))?;
                crate::wire::be::patch_u32(out, at, n);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<(Vec<usize>, Vec<Element>)> {
        let mut p = Parser {
            text: text.as_bytes(),
            pos: 0,
            ndim: None,
            dims: [None; MAXDIM],
            elements: Vec::new(),
        };
        p.level(0)?;
        if p.pos != text.len() {
            return None;
        }
        let n = p.ndim.unwrap_or(0);
        Some((p.dims[..n].iter().map(|d| d.unwrap()).collect(), p.elements))
    }

    fn s(v: &str) -> Element {
        Some(v.as_bytes().to_vec())
    }

    #[test]
    fn quoting() {
        assert_eq!(
            parse(r#"{a,"b c",NULL,"NULL","",null,"\"\\",x\,y}"#).unwrap(),
            (
                vec![8],
                vec![
                    s("a"),
                    s("b c"),
                    None,
                    s("NULL"),
                    s(""),
                    None,
                    s("\"\\"),
                    s("x,y")
                ]
            )
        );
        assert_eq!(parse("{ a , b }").unwrap().1, vec![s("a"), s("b")]);
        assert_eq!(parse(r"{a\ }").unwrap().1, vec![s("a ")]);
        assert_eq!(parse("{}").unwrap(), (vec![], vec![]));
    }

    #[test]
    fn dimensions() {
        assert_eq!(parse("{{1,2},{3,4},{5,6}}").unwrap().0, vec![3, 2]);
        assert_eq!(parse("{{{1}},{{2}}}").unwrap().0, vec![2, 1, 1]);
        for bad in [
            "{{1,2},{3}}",
            "{{1},2}",
            "{1,{2}}",
            "{{}}",
            "{1,}",
            "{,1}",
            "{1",
            "{\"a}",
            "{1}}",
            "{{{{{{{1}}}}}}}",
            "{a\"b\"}",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn binary_layout() {
        let mut out = BytesMut::new();
        to_binary(1007, 23, b"[0:1]={7,NULL}", &TextStyle::default(), &mut out).unwrap();
        let want: Vec<u8> = [1i32, 1, 23, 2, 0, 4, 7, -1]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(&out[..], &want[..]);
        out.clear();
        to_binary(1007, 23, b"{}", &TextStyle::default(), &mut out).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23]);
        out.clear();
        assert!(to_binary(1007, 23, b"[1:3]={1,2}", &TextStyle::default(), &mut out).is_err());
        assert!(to_binary(1007, 23, b"[1:2]{1,2}", &TextStyle::default(), &mut out).is_err());
        assert!(to_binary(1007, 23, b"{1,2} x", &TextStyle::default(), &mut out).is_err());
    }
}
