use super::InputError;

/// How many classes a prediction lists: the server default, or what the request asked within the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopK(usize);

impl TopK {
    pub fn parse(requested: Option<usize>, default: usize, max: usize) -> Result<Self, InputError> {
        match requested {
            None => Ok(Self(default.clamp(1, max.max(1)))),
            Some(k) if (1..=max).contains(&k) => Ok(Self(k)),
            Some(k) => Err(InputError::Invalid(format!("top_k must be between 1 and {max}, got {k}"))),
        }
    }

    pub fn get(self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_defaults_and_stays_within_its_bound() {
        assert_eq!(TopK::parse(None, 5, 20).unwrap().get(), 5);
        assert_eq!(TopK::parse(Some(20), 5, 20).unwrap().get(), 20);
        assert!(TopK::parse(Some(0), 5, 20).is_err());
        assert!(TopK::parse(Some(21), 5, 20).is_err());
    }
}
