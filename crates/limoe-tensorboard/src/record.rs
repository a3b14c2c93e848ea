//! The TFRecord framing of event files: per record its length (u64, little-endian), the
//! masked CRC-32C of the length, the data, and the masked CRC-32C of the data.

use anyhow::bail;

/// Bytes of framing before the data: the length and its checksum.
const HEADER: usize = 12;
/// Bytes of framing after the data: its checksum.
const FOOTER: usize = 4;

/// The CRC-32C of `bytes`, masked as TFRecord stores it (so that a CRC of data holding
/// CRCs stays well distributed).
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `data` framed as one record.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(HEADER + data.len() + FOOTER);
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc(&length).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc(data).to_le_bytes());
    record
}

/// The records of a file's bytes, in order.
pub struct Records<'a> {
    /// The records, each its byte offset and data.
    pub records: Vec<(usize, &'a [u8])>,
    /// The offset of an incomplete last record, as a writer killed mid-record leaves it.
    pub torn_at: Option<usize>,
}

/// Splits `bytes` into records, checking both checksums of each; a last record cut short
/// is reported in [`Records::torn_at`], a checksum that does not match is an error giving
/// its byte offset.
pub fn split(bytes: &[u8]) -> anyhow::Result<Records<'_>> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + HEADER) else {
            return Ok(Records {
                records,
                torn_at: Some(at),
            });
        };
        let (length, length_crc) = header.split_at(8);
        if masked_crc(length) != u32_at(length_crc) {
            bail!("the record at byte {at} has a corrupt length (its checksum does not match)");
        }
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
        let end = usize::try_from(length)
            .ok()
            .and_then(|n| (at + HEADER).checked_add(n))
            .and_then(|n| n.checked_add(FOOTER));
        let Some(record) = end.and_then(|end| bytes.get(at..end)) else {
            return Ok(Records {
                records,
                torn_at: Some(at),
            });
        };
        let (data, data_crc) = record[HEADER..].split_at(record.len() - HEADER - FOOTER);
        if masked_crc(data) != u32_at(data_crc) {
            bail!("the record at byte {at} is corrupt (its data checksum does not match)");
        }
        records.push((at, data));
        at += record.len();
    }
    Ok(Records {
        records,
        torn_at: None,
    })
}

fn u32_at(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C of 32 zero bytes is 0x8a9136aa (RFC 3720's test vector); masked, 0x0fd7fffa,
    /// as TensorBoard's own `masked_crc32c` (its tensorflow_stub) computes it.
    #[test]
    fn checksums_are_tensorboards_masked_crc32c() {
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(masked_crc(&[0u8; 32]), 0x0fd7_fffa);
    }

    #[test]
    fn framed_records_split_back_and_a_torn_tail_is_reported() {
        let mut bytes = frame(b"first");
        bytes.extend(frame(b""));
        let whole = bytes.len();
        bytes.extend(&frame(b"third")[..10]);
        let records = split(&bytes).unwrap();
        let data: Vec<&[u8]> = records.records.iter().map(|(_, d)| *d).collect();
        assert_eq!(data, [b"first".as_slice(), b""]);
        assert_eq!(records.torn_at, Some(whole));
    }

    #[test]
    fn a_flipped_byte_is_an_error_naming_its_record() {
        let mut bytes = frame(b"first");
        let second = bytes.len();
        bytes.extend(frame(b"second"));
        bytes[second + HEADER + 2] ^= 1;
        let error = split(&bytes).err().unwrap().to_string();
        assert!(error.contains(&format!("byte {second}")), "{error}");
    }
}
