//! A `/predict` upload: one image (non-empty, of a format we decode) and at most one text within
//! the length limit. Reading it from a body is the routes' job (routes/extract).
use bytes::Bytes;
use image::ImageFormat;

use super::InputError;
use crate::preprocess::{sniff_format, ImageError};

#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_body_bytes: usize,
    pub max_text_chars: usize,
    pub max_parts: usize,
    /// For the whole body to arrive: a slow client does not hold its connection forever.
    pub read_timeout: std::time::Duration,
}

/// Non-empty bytes whose magic number is an image format we decode.
#[derive(Debug, Clone)]
pub struct ImageUpload {
    bytes: Bytes,
    format: ImageFormat,
}

impl ImageUpload {
    pub fn parse(bytes: Bytes) -> Result<Self, InputError> {
        if bytes.is_empty() {
            return Err(ImageError::Invalid("the `image` file is empty".into()).into());
        }
        let format = sniff_format(&bytes)?;
        Ok(Self { bytes, format })
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn format(&self) -> ImageFormat {
        self.format
    }
}

/// A text within the length limit, trimmed; blank text counts as no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictText(String);

impl PredictText {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Option<Self>, InputError> {
        let text = raw.trim();
        let chars = text.chars().count();
        if chars > max_chars {
            return Err(InputError::Invalid(format!(
                "`text` is {chars} characters, more than the limit of {max_chars}"
            )));
        }
        Ok((!text.is_empty()).then(|| Self(text.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct PredictUpload {
    pub image: ImageUpload,
    pub text: Option<PredictText>,
}

impl PredictUpload {
    /// One image and its optional text, as raw field bytes.
    pub fn parse(image: Bytes, text: Option<Bytes>, max_text_chars: usize) -> Result<Self, InputError> {
        let text = match text {
            None => None,
            Some(bytes) => {
                let raw =
                    std::str::from_utf8(&bytes).map_err(|_| InputError::Invalid("`text` is not valid UTF-8".into()))?;
                PredictText::parse(raw, max_text_chars)?
            }
        };
        Ok(Self { image: ImageUpload::parse(image)?, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_text_is_no_text_and_long_text_is_refused() {
        assert_eq!(PredictText::parse("  \n ", 10).unwrap(), None);
        assert_eq!(PredictText::parse(" pizza ", 10).unwrap().unwrap().as_str(), "pizza");
        assert!(PredictText::parse("ééééééééééé", 10).is_err(), "11 characters");
        assert!(PredictText::parse("éééééééééé", 10).is_ok(), "10 characters, 20 bytes");
    }

    #[test]
    fn an_empty_image_is_refused() {
        assert!(matches!(ImageUpload::parse(Bytes::new()), Err(InputError::Image(ImageError::Invalid(_)))));
    }
}
