//! A few DER encoders, for the extensions rcgen cannot write itself.
//!
//! Only definite-length, primitive or constructed TLVs with single-byte tags
//! are needed here, which keeps this small enough to check by eye.

/// Universal tag numbers and context tags used by this crate.
pub mod tag {
    pub const OBJECT_IDENTIFIER: u8 = 0x06;
    pub const SEQUENCE: u8 = 0x30;
    /// `[6] IMPLICIT IA5String` in a GeneralName (uniformResourceIdentifier).
    pub const GENERAL_NAME_URI: u8 = 0x86;
}

/// Encodes a tag-length-value with a definite length.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already-encoded elements.
pub fn sequence(elements: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &elements.concat())
}

/// An OBJECT IDENTIFIER from its arcs. Panics on fewer than two arcs or a
/// first arc above 2, which only a programming error can produce: every OID
/// passed here is a constant.
pub fn oid(arcs: &[u64]) -> Vec<u8> {
    assert!(arcs.len() >= 2 && arcs[0] <= 2, "malformed OID constant");
    let mut content = Vec::new();
    push_base128(&mut content, arcs[0] * 40 + arcs[1]);
    for &arc in &arcs[2..] {
        push_base128(&mut content, arc);
    }
    tlv(tag::OBJECT_IDENTIFIER, &content)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn push_base128(out: &mut Vec<u8>, mut value: u64) {
    let mut chunk = [0u8; 10];
    let mut i = chunk.len();
    loop {
        i -= 1;
        chunk[i] = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            break;
        }
    }
    let last = chunk.len() - 1;
    for (j, byte) in chunk.iter().enumerate().skip(i) {
        out.push(if j == last { *byte } else { byte | 0x80 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths_follow_der() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 0x02, 1, 2]);
        let long = tlv(0x04, &[0u8; 200]);
        assert_eq!(&long[..3], [0x04, 0x81, 200]);
        assert_eq!(long.len(), 203);
        let longer = tlv(0x04, &[0u8; 300]);
        assert_eq!(&longer[..4], [0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn oids_encode_like_the_standard_examples() {
        // id-ad-caIssuers 1.3.6.1.5.5.7.48.2
        assert_eq!(
            oid(&[1, 3, 6, 1, 5, 5, 7, 48, 2]),
            [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02]
        );
        // ecdsa-with-SHA256 1.2.840.10045.4.3.2 (multi-byte arcs)
        assert_eq!(
            oid(&[1, 2, 840, 10045, 4, 3, 2]),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        );
    }

    #[test]
    fn sequences_concatenate_their_elements() {
        assert_eq!(
            sequence(&[&[0x05, 0x00], &[0x01, 0x01, 0xff]]),
            [0x30, 0x05, 0x05, 0x00, 0x01, 0x01, 0xff]
        );
    }
}
