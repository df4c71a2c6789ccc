//! Input generators shared by the targets: random bytes, and near-valid inputs (a valid
//! input with a few random mutations) so that the deep paths of a decoder are reached.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Bytes that matter to the decoders (terminators, quotes, comment starts, signs, digits).
const INTERESTING: &[u8] = b"\0\xff\x80'\"\\;/*-\n \t$.,:{}[]()=+eE0179@PT";

/// Any bytes, up to `max` of them.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

/// A byte, often one of the interesting ones.
pub fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        proptest::sample::select(INTERESTING),
        proptest::sample::select(INTERESTING),
    ]
}

#[derive(Debug, Clone)]
pub enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index, usize),
    Truncate(Index),
    Duplicate(Index, usize),
    /// Overwrites a big-endian length-sized word (counts, lengths) with an edge value.
    Word(Index, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let edge = prop_oneof![
        Just(0u32),
        Just(1),
        Just(3),
        Just(4),
        Just(5),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(0xffff_ffff),
        Just(0x3fff_ffff),
        Just(0x4000_0000),
        any::<u32>(),
        0u32..300,
    ];
    prop_oneof![
        4 => (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        3 => (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        2 => (any::<Index>(), edge).prop_map(|(i, w)| Mutation::Word(i, w)),
    ]
}

pub fn apply(mut v: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = v.len();
        match *m {
            Mutation::Set(ref i, b) if len > 0 => {
                let at = i.index(len);
                v[at] = b;
            }
            Mutation::Insert(ref i, b) => v.insert(i.index(len + 1), b),
            Mutation::Remove(ref i, n) if len > 0 => {
                let at = i.index(len);
                v.drain(at..(at + n).min(len));
            }
            Mutation::Truncate(ref i) => v.truncate(i.index(len + 1)),
            Mutation::Duplicate(ref i, n) if len > 0 => {
                let at = i.index(len);
                let piece: Vec<u8> = v[at..(at + n).min(len)].to_vec();
                v.splice(at..at, piece);
            }
            Mutation::Word(ref i, w) if len >= 4 => {
                let at = i.index(len - 3);
                v[at..at + 4].copy_from_slice(&w.to_be_bytes());
            }
            _ => {}
        }
    }
    v
}

/// `valid`, then (most of the time) up to four random mutations of it.
pub fn near<S>(valid: S) -> impl Strategy<Value = Vec<u8>>
where
    S: Strategy<Value = Vec<u8>>,
{
    (
        valid,
        prop_oneof![
            1 => Just(Vec::new()),
            3 => vec(mutation(), 1..5),
        ],
    )
        .prop_map(|(v, m)| apply(v, &m))
}

/// Near-valid inputs and, one time in four, random bytes.
pub fn near_or_random<S>(valid: S, max: usize) -> impl Strategy<Value = Vec<u8>>
where
    S: Strategy<Value = Vec<u8>>,
{
    prop_oneof![3 => near(valid), 1 => bytes(max)]
}

/// A NUL-free byte string (a C string's content), often plain ASCII.
pub fn cstr(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(1u8..=255, 0..=max),
        "[a-zA-Z0-9_ .$]{0,12}".prop_map(String::into_bytes),
    ]
}

/// A message: tag, length word (body + 4), body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Splits points for a stream of `len` bytes: sorted, in 0..=len.
pub fn cuts(len: usize, points: &[Index]) -> Vec<usize> {
    let mut c: Vec<usize> = points.iter().map(|i| i.index(len + 1)).collect();
    c.sort_unstable();
    c
}

/// The pieces of `data` between `cuts`.
pub fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts {
        out.push(&data[from..c]);
        from = c;
    }
    out.push(&data[from..]);
    out
}

/// Polls a future that cannot wait (it reads from memory) to its end.
pub fn now<F: std::future::Future>(f: F) -> F::Output {
    use futures_util::FutureExt;
    f.now_or_never().expect("a read from memory never waits")
}
