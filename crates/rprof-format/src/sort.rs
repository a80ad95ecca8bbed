//! pstats' sort keys: their names, abbreviations, and what they compare.
//!
//! `Stats.sort_stats` accepts the words of `Stats.sort_arg_dict_default`
//! and any prefix that `Stats.get_sort_arg_defs` keeps. That function does
//! not quite implement "any unambiguous prefix": it walks the words in
//! order, registers each word's prefixes from longest to shortest, and at
//! the first prefix that is already taken marks that one prefix as bad and
//! moves on. So `cu` is accepted (it is never checked twice) while `cum` is
//! rejected, although `cumtime` and `cumulative` mean the same thing. This
//! module reproduces that algorithm instead of the rule it approximates, so
//! that exactly the words pstats 3.7–3.13 accepts are accepted.

use std::fmt;
use std::str::FromStr;

use crate::FormatError;

/// One of pstats' sort orders, as in Python's `pstats.SortKey`.
///
/// Parse with [`SortKey::parse`] (or [`str::parse`]), which accepts exactly
/// the words and abbreviations `Stats.sort_stats` accepts.
///
/// ```
/// use rprof_format::SortKey;
///
/// assert_eq!(SortKey::parse("cumtime").unwrap(), SortKey::Cumulative);
/// assert_eq!(SortKey::parse("tott").unwrap(), SortKey::Time);
/// assert!(SortKey::parse("cum").is_err()); // pstats rejects it too
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortKey {
    /// `calls`, `ncalls`: total call count, descending.
    Calls,
    /// `cumulative`, `cumtime`: cumulative time, descending.
    Cumulative,
    /// `filename`, `module`: file name, ascending.
    Filename,
    /// `line`: line number, ascending.
    Line,
    /// `name`: function name, ascending.
    Name,
    /// `nfl`: function name, then file name, then line number, ascending.
    Nfl,
    /// `pcalls`: primitive call count, descending.
    Pcalls,
    /// `stdname`: the printed `file:line(name)` string, ascending. This is
    /// what `python -m cProfile` sorts by when no `-s` is given.
    Stdname,
    /// `time`, `tottime`: internal time, descending.
    Time,
}

/// pstats' `Stats.sort_arg_dict_default`, in its order (which matters for
/// abbreviations).
const SORT_ARG_DICT: [(&str, SortKey); 13] = [
    ("calls", SortKey::Calls),
    ("ncalls", SortKey::Calls),
    ("cumtime", SortKey::Cumulative),
    ("cumulative", SortKey::Cumulative),
    ("filename", SortKey::Filename),
    ("line", SortKey::Line),
    ("module", SortKey::Filename),
    ("name", SortKey::Name),
    ("nfl", SortKey::Nfl),
    ("pcalls", SortKey::Pcalls),
    ("stdname", SortKey::Stdname),
    ("time", SortKey::Time),
    ("tottime", SortKey::Time),
];

/// A column of pstats' sort tuple `(cc, nc, tt, ct, file, line, name,
/// std_string)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Primitive,
    Calls,
    TotTime,
    CumTime,
    File,
    Line,
    Name,
    StdName,
}

impl SortKey {
    /// Every sort key, in the order of Python's `pstats.SortKey`.
    pub const ALL: [SortKey; 9] = [
        SortKey::Calls,
        SortKey::Cumulative,
        SortKey::Filename,
        SortKey::Line,
        SortKey::Name,
        SortKey::Nfl,
        SortKey::Pcalls,
        SortKey::Stdname,
        SortKey::Time,
    ];

    /// Parses a key the way `Stats.sort_stats(word)` does: a word of
    /// `sort_arg_dict_default` or an abbreviation `get_sort_arg_defs` keeps.
    /// Matching is case-sensitive, as in pstats.
    pub fn parse(word: &str) -> Result<SortKey, FormatError> {
        if let Some(key) = lookup(word) {
            return Ok(key);
        }
        let candidates: Vec<&str> = SORT_ARG_DICT
            .iter()
            .map(|&(name, _)| name)
            .filter(|name| !word.is_empty() && name.starts_with(word))
            .collect();
        if candidates.is_empty() {
            Err(FormatError::UnknownSortKey {
                key: word.to_owned(),
                valid: SortKey::valid_words().join(", "),
            })
        } else {
            Err(FormatError::AmbiguousSortKey {
                key: word.to_owned(),
                candidates: candidates.join(", "),
            })
        }
    }

    /// The old integer arguments `sort_stats` still accepts: -1 (what
    /// `python -m cProfile` passes by default), 0, 1 and 2.
    pub fn from_legacy(n: i32) -> Option<SortKey> {
        match n {
            -1 => Some(SortKey::Stdname),
            0 => Some(SortKey::Calls),
            1 => Some(SortKey::Time),
            2 => Some(SortKey::Cumulative),
            _ => None,
        }
    }

    /// The words pstats accepts in full, sorted (cProfile's `-s` choices).
    pub fn valid_words() -> Vec<&'static str> {
        let mut words: Vec<&str> = SORT_ARG_DICT.iter().map(|&(name, _)| name).collect();
        words.sort_unstable();
        words
    }

    /// The canonical name: the value of Python's `pstats.SortKey` member.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Calls => "calls",
            SortKey::Cumulative => "cumulative",
            SortKey::Filename => "filename",
            SortKey::Line => "line",
            SortKey::Name => "name",
            SortKey::Nfl => "nfl",
            SortKey::Pcalls => "pcalls",
            SortKey::Stdname => "stdname",
            SortKey::Time => "time",
        }
    }

    /// What pstats prints after "Ordered by:" for this key.
    pub fn description(self) -> &'static str {
        match self {
            SortKey::Calls => "call count",
            SortKey::Cumulative => "cumulative time",
            SortKey::Filename => "file name",
            SortKey::Line => "line number",
            SortKey::Name => "function name",
            SortKey::Nfl => "name/file/line",
            SortKey::Pcalls => "primitive call count",
            SortKey::Stdname => "standard name",
            SortKey::Time => "internal time",
        }
    }

    /// The columns compared, most significant first, and whether each is
    /// sorted descending.
    pub(crate) fn fields(self) -> &'static [(Field, bool)] {
        match self {
            SortKey::Calls => &[(Field::Calls, true)],
            SortKey::Cumulative => &[(Field::CumTime, true)],
            SortKey::Filename => &[(Field::File, false)],
            SortKey::Line => &[(Field::Line, false)],
            SortKey::Name => &[(Field::Name, false)],
            SortKey::Nfl => &[
                (Field::Name, false),
                (Field::File, false),
                (Field::Line, false),
            ],
            SortKey::Pcalls => &[(Field::Primitive, true)],
            SortKey::Stdname => &[(Field::StdName, false)],
            SortKey::Time => &[(Field::TotTime, true)],
        }
    }
}

/// `get_sort_arg_defs()[word]`, computed the way pstats computes the table.
fn lookup(word: &str) -> Option<SortKey> {
    let mut table: Vec<(&str, SortKey)> = Vec::new();
    let mut bad: Vec<&str> = Vec::new();
    for (name, key) in SORT_ARG_DICT {
        let mut fragment = name;
        while !fragment.is_empty() {
            if table.iter().any(|&(f, _)| f == fragment) {
                bad.push(fragment);
                break;
            }
            table.push((fragment, key));
            // The words are ASCII, so every byte is a char boundary.
            fragment = &fragment[..fragment.len() - 1];
        }
    }
    table
        .into_iter()
        .find(|&(f, _)| f == word && !bad.contains(&f))
        .map(|(_, key)| key)
}

impl FromStr for SortKey {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SortKey::parse(s)
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_words_parse() {
        for (word, key) in SORT_ARG_DICT {
            assert_eq!(SortKey::parse(word).unwrap(), key, "{word}");
        }
        for key in SortKey::ALL {
            assert_eq!(SortKey::parse(key.name()).unwrap(), key);
            assert_eq!(key.to_string(), key.name());
        }
    }

    /// The accepted abbreviations, as printed by
    /// `sorted(pstats.Stats().get_sort_arg_defs())` on 3.7–3.13.
    #[test]
    fn abbreviations_match_pstats() {
        let accepted = "ca cal call calls cu cumt cumti cumtim cumtime cumu cumul cumula \
            cumulat cumulati cumulativ cumulative f fi fil file filen filena filenam filename \
            l li lin line m mo mod modu modul module na nam name nc nca ncal ncall ncalls nf \
            nfl p pc pca pcal pcall pcalls s st std stdn stdna stdnam stdname ti tim time to \
            tot tott totti tottim tottime";
        let accepted: Vec<&str> = accepted.split_whitespace().collect();
        let mut all_prefixes: Vec<&str> = SORT_ARG_DICT
            .iter()
            .flat_map(|(name, _)| (1..=name.len()).map(move |n| &name[..n]))
            .collect();
        all_prefixes.sort_unstable();
        all_prefixes.dedup();
        for word in all_prefixes {
            assert_eq!(
                SortKey::parse(word).is_ok(),
                accepted.contains(&word),
                "{word}"
            );
        }
        assert_eq!(SortKey::parse("file").unwrap(), SortKey::Filename);
        assert_eq!(SortKey::parse("cu").unwrap(), SortKey::Cumulative);
    }

    #[test]
    fn rejections_say_what_to_type() {
        let err = SortKey::parse("bogus").unwrap_err();
        assert!(matches!(err, FormatError::UnknownSortKey { .. }));
        let msg = err.to_string();
        for (word, _) in SORT_ARG_DICT {
            assert!(msg.contains(word), "{msg}");
        }
        let err = SortKey::parse("cum").unwrap_err();
        assert!(matches!(err, FormatError::AmbiguousSortKey { .. }));
        assert!(err.to_string().contains("cumtime, cumulative"), "{err}");
        assert!(matches!(
            SortKey::parse(""),
            Err(FormatError::UnknownSortKey { .. })
        ));
        assert!(SortKey::parse("Calls").is_err());
        assert!(SortKey::parse("callsx").is_err());
    }

    #[test]
    fn legacy_integers() {
        assert_eq!(SortKey::from_legacy(-1), Some(SortKey::Stdname));
        assert_eq!(SortKey::from_legacy(2), Some(SortKey::Cumulative));
        assert_eq!(SortKey::from_legacy(3), None);
    }
}
