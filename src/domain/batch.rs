//! A `/predict/batch` upload: several `image` files, each with an optional `text`.
//!
//! Texts pair with images by position: the first `text` field goes with the first `image`, and so
//! on, wherever the fields sit in the body (Python's `requests` puts form fields before files). An
//! empty `text` stands for "no text" for an image in the middle. An image that cannot be used is
//! that item's error, not the whole batch's.
use bytes::Bytes;

use super::{InputError, PredictUpload};

pub struct BatchUpload {
    /// In the order of the `image` fields.
    pub items: Vec<Result<PredictUpload, InputError>>,
}

impl BatchUpload {
    /// Pairs texts with images by position; an image that cannot be used is its item's error.
    pub fn pair(
        images: Vec<Bytes>,
        texts: Vec<Bytes>,
        max_text_chars: usize,
        max_items: usize,
    ) -> Result<Self, InputError> {
        if images.is_empty() {
            return Err(InputError::Invalid(
                "no `image` file fields (send multipart/form-data with -F image=@a.jpg -F image=@b.jpg ...)".into(),
            ));
        }
        if images.len() > max_items {
            return Err(InputError::Invalid(format!(
                "{} images, more than the limit of {max_items} per batch",
                images.len()
            )));
        }
        if texts.len() > images.len() {
            return Err(InputError::Invalid(format!(
                "{} `text` fields for {} images: texts pair with images by position",
                texts.len(),
                images.len()
            )));
        }
        let mut texts = texts.into_iter();
        let items = images.into_iter().map(|image| PredictUpload::parse(image, texts.next(), max_text_chars)).collect();
        Ok(Self { items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];

    fn bytes(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }

    #[test]
    fn texts_pair_by_position_and_a_bad_image_is_its_own_error() {
        let images = vec![bytes(JPEG), bytes(b"not an image"), bytes(JPEG)];
        let batch = BatchUpload::pair(images, vec![bytes(b"pizza"), bytes(b"")], 100, 10).unwrap();
        let texts: Vec<Option<&str>> =
            batch.items.iter().map(|i| i.as_ref().ok().and_then(|u| u.text.as_ref().map(|t| t.as_str()))).collect();
        assert_eq!(texts, [Some("pizza"), None, None]);
        assert!(matches!(batch.items[1], Err(InputError::Image(crate::preprocess::ImageError::Unsupported(_)))));
    }

    #[test]
    fn the_batch_itself_is_refused_when_empty_too_big_or_with_spare_texts() {
        assert!(BatchUpload::pair(vec![], vec![], 100, 10).is_err());
        assert!(BatchUpload::pair(vec![bytes(JPEG); 11], vec![], 100, 10).is_err());
        assert!(BatchUpload::pair(vec![bytes(JPEG); 10], vec![], 100, 10).is_ok());
        assert!(BatchUpload::pair(vec![bytes(JPEG)], vec![bytes(b"a"), bytes(b"b")], 100, 10).is_err());
    }
}
