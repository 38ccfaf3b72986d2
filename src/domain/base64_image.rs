//! Images sent as base64 in JSON bodies (/predict's JSON form, the Open Inference Protocol's BYTES
//! inputs): the decoding, and the body size that can carry a given image size.
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::Bytes;

use super::InputError;

/// Standard alphabet; padding may be there or not (clients differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Room for the text, the keys and a data-URL prefix beside the base64 of the images.
const JSON_OVERHEAD_BYTES: usize = 64 * 1024;

/// The largest JSON body that can carry `decoded_bytes` of images as base64 (4 bytes for 3).
pub fn base64_body_limit(decoded_bytes: usize) -> usize {
    decoded_bytes.div_ceil(3) * 4 + JSON_OVERHEAD_BYTES
}

/// Plain base64, or a data URL (`data:image/jpeg;base64,...`); whitespace (line breaks) ignored.
/// An image over `max_bytes` once decoded is refused (413), as an upload of that size would be.
pub fn decode_base64_image(field: &str, max_bytes: usize) -> Result<Bytes, InputError> {
    let data = match field.strip_prefix("data:") {
        Some(url) => {
            let (meta, data) = url
                .split_once(',')
                .ok_or_else(|| InputError::Invalid("`image` is a data URL without a comma".into()))?;
            if !meta.ends_with(";base64") {
                return Err(InputError::Invalid("`image` data URLs must be base64 (data:image/...;base64,...)".into()));
            }
            data
        }
        None => field,
    };
    let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let image =
        BASE64.decode(&compact).map_err(|e| InputError::Invalid(format!("`image` is not valid base64: {e}")))?;
    if image.len() > max_bytes {
        return Err(InputError::TooLarge { limit: max_bytes });
    }
    Ok(Bytes::from(image))
}

#[cfg(test)]
mod tests {
    use super::decode_base64_image;
    use super::InputError;

    fn decode_image(field: &str) -> Result<Vec<u8>, InputError> {
        decode_base64_image(field, 100).map(|b| b.to_vec())
    }

    #[test]
    fn base64_is_taken_plain_or_as_a_data_url_with_or_without_padding() {
        assert_eq!(decode_image("aGk=").unwrap(), b"hi");
        assert_eq!(decode_image("aGk").unwrap(), b"hi");
        assert_eq!(decode_image("data:image/jpeg;base64,aG\nk=").unwrap(), b"hi");
        assert!(decode_image("data:image/jpeg,hi").is_err(), "not base64");
        assert!(decode_image("not base64!").is_err());
    }
}
