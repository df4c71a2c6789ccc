//! NotificationResponse ('A'): pid (4 bytes), channel\0, payload\0. The relay tells a
//! notification's channel from the first bytes of its body, without waiting for the rest.

pub const TAG: u8 = b'A';

/// Whether a NotificationResponse is on a given channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChannel {
    Yes,
    No,
    /// The bytes so far end before the channel name does: hold them and look again.
    NeedMore,
}

/// Whether the notification whose body starts with `start` (what has arrived of a body of
/// `body_len` bytes) is on `channel`.
pub fn on_channel(channel: &[u8], start: &[u8], body_len: usize) -> OnChannel {
    // pid, the name and its terminator.
    let need = 4 + channel.len() + 1;
    if body_len < need {
        return OnChannel::No;
    }
    let Some(name) = start.get(4..need) else {
        return OnChannel::NeedMore;
    };
    match name.split_last() {
        Some((0, name)) if name == channel => OnChannel::Yes,
        _ => OnChannel::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(channel: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut b = 4242i32.to_be_bytes().to_vec();
        b.extend_from_slice(channel);
        b.push(0);
        b.extend_from_slice(payload);
        b.push(0);
        b
    }

    #[test]
    fn the_channel_is_told_from_any_cut_of_the_body() {
        let cases: &[(&[u8], &[u8], OnChannel)] = &[
            (b"later", b"12 succeeded", OnChannel::Yes),
            (b"later", b"", OnChannel::Yes),
            (b"later2", b"x", OnChannel::No),
            (b"late", b"r", OnChannel::No),
            (b"LATER", b"x", OnChannel::No),
            (b"other", b"later", OnChannel::No),
            (b"", b"later", OnChannel::No),
        ];
        for (channel, payload, want) in cases {
            let b = body(channel, payload);
            // From the pid and the name's length in bytes on, the verdict; before, hold.
            assert_eq!(on_channel(b"later", &b, b.len()), *want, "{channel:?}");
            for cut in 0..b.len() {
                let got = on_channel(b"later", &b[..cut], b.len());
                if cut >= 4 + b"later\0".len() {
                    assert_eq!(got, *want, "{channel:?} cut at {cut}");
                } else {
                    assert_eq!(got, OnChannel::NeedMore, "{channel:?} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn a_body_too_short_for_the_name_is_not_on_it() {
        // pid + "later" without its terminator: whatever it is, it is not ours.
        assert_eq!(on_channel(b"later", b"\0\0\0\x01later", 9), OnChannel::No);
        assert_eq!(on_channel(b"later", b"", 0), OnChannel::No);
        assert_eq!(on_channel(b"later", b"", 10), OnChannel::NeedMore);
    }
}
