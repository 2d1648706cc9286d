//! The rule for text fields that the database stores (names, descriptions, categories): kept as
//! sent, a length in characters, something other than blanks, and no NUL character, which
//! PostgreSQL's `text` cannot hold. [`PATTERN`] is the same rule for the OpenAPI document.

/// What a text field must match, besides its length: no NUL, one character that is not a
/// blank (space, tab, line feed, carriage return). ECMA-262 and Python read it alike.
pub const PATTERN: &str = r"^[^\x00]*[^\x00 \t\n\r][^\x00]*$";

/// Whether `text` is a text field of `min..=max` characters.
pub fn fits(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.chars().count())
        && !text.contains('\0')
        && text.contains(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
}

#[cfg(test)]
mod tests {
    use super::{fits, PATTERN};

    #[test]
    fn the_published_pattern_says_what_fits_says() {
        let pattern = regex::Regex::new(PATTERN).unwrap();
        for text in [
            "a", " a ", " ", "\t\r\n ", "", "a\0", "\0", "신발", "\u{a0}", "a\nb", "\0 x",
        ] {
            assert_eq!(pattern.is_match(text), fits(text, 0, 1000), "{text:?}");
        }
    }

    #[test]
    fn a_text_field_counts_characters_and_refuses_blanks_and_nul() {
        assert!(fits("Sneakers", 1, 30));
        assert!(fits("신발", 2, 2), "characters, not bytes");
        assert!(fits(" a ", 3, 3), "kept as sent, blanks counted");
        assert!(!fits(" \t\r\n", 1, 30));
        assert!(!fits("", 0, 30));
        assert!(!fits("a\0b", 1, 30));
        assert!(!fits(&"x".repeat(31), 1, 30));
        assert!(
            fits("\u{a0}", 1, 1),
            "only the four ASCII blanks are blanks"
        );
    }
}
