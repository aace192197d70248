//! Typed values: a JSON leaf to a type marker and serialized plaintext bytes, and the
//! stored form `base64(type_marker || ciphertext)`.
//!
//! | marker | type | serialized plaintext |
//! | --- | --- | --- |
//! | 1 | Null | never written: `null` stays `null` |
//! | 2 | Boolean | 8 bytes, little-endian int64 1 or 0 |
//! | 3 | Double | 8 bytes, IEEE-754 binary64 little-endian, finite |
//! | 4 | Long | 8 bytes, two's-complement int64 little-endian |
//! | 5 | String | UTF-8 bytes |
//!
//! Numbers in JSON text follow the .NET rule, decided from the literal: an integer literal
//! that fits int64 is a Long (`-0` too: Long 0), anything else (a fraction, an exponent, an
//! integer outside int64) is a Double; an integer literal that fits neither an int64 nor a
//! double exactly is refused rather than rounded
//! ([`Plaintext::from_number_literal`]).
//!
//! A `serde_json::Value` has lost the literal, so [`Plaintext::from_number`] types what
//! serde_json kept: an int64 is a Long, any other number a Double, except `-0.0`, which is
//! refused: serde_json reads both `-0` (a Long 0 in text) and `-0.0` (a Double) as
//! `-0.0`, and a guess would give a different ciphertext than the text for one of them.
//! serde_json itself rounds an integer literal beyond the 64-bit range to a double
//! while parsing, before this crate sees it: such a number reaches the `Value` API as
//! that Double, where the text API refuses it.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::{Number, Value};
use zeroize::Zeroizing;

use crate::cipher::{CbcHmacKey, EncryptionType, ModernKey, WipingWriter};
use crate::error::{Error, Result};

/// The type of an encrypted value, stored in clear as the first byte of the stored form.
///
/// Note: in the Cosmos format the marker is not authenticated.
///
/// # Examples
///
/// ```
/// use always_encrypted::value::{Plaintext, TypeMarker};
/// use serde_json::json;
///
/// assert_eq!(Plaintext::from_json(&json!(42))?.marker(), TypeMarker::Long);
/// assert_eq!(Plaintext::from_json(&json!(42.0))?.marker(), TypeMarker::Double);
/// assert_eq!(TypeMarker::try_from(5u8), Ok(TypeMarker::String));
/// assert_eq!(TypeMarker::try_from(6u8), Err(6));
/// assert_eq!(TypeMarker::Boolean as u8, 2);
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TypeMarker {
    /// JSON `null`. Never written: `null` is not encrypted.
    Null = 1,
    /// JSON `true` / `false`.
    Boolean = 2,
    /// A JSON number stored as an IEEE-754 double.
    Double = 3,
    /// A JSON integer stored as an int64.
    Long = 4,
    /// A JSON string.
    String = 5,
}

impl TryFrom<u8> for TypeMarker {
    type Error = u8;

    fn try_from(b: u8) -> std::result::Result<Self, u8> {
        Ok(match b {
            1 => TypeMarker::Null,
            2 => TypeMarker::Boolean,
            3 => TypeMarker::Double,
            4 => TypeMarker::Long,
            5 => TypeMarker::String,
            other => return Err(other),
        })
    }
}

/// The serialized plaintext of one JSON leaf, with its type marker.
///
/// # Security
///
/// Fixed-size payloads are zeroized on drop; a string payload borrows the caller's text.
///
/// # Examples
///
/// ```
/// use always_encrypted::value::{Plaintext, TypeMarker};
/// use serde_json::json;
///
/// let pt = Plaintext::from_json(&json!(true))?;
/// assert_eq!(pt.marker(), TypeMarker::Boolean);
/// assert_eq!(pt.as_bytes(), &[1, 0, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(Plaintext::to_json(pt.marker(), pt.as_bytes())?, json!(true));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub struct Plaintext<'a> {
    marker: TypeMarker,
    bytes: PlaintextBytes<'a>,
}

enum PlaintextBytes<'a> {
    Fixed(Zeroizing<[u8; 8]>),
    Borrowed(&'a [u8]),
}

impl<'a> Plaintext<'a> {
    /// A string leaf: its UTF-8 bytes, borrowed.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    ///
    /// let pt = Plaintext::string("Ada");
    /// assert_eq!((pt.marker(), pt.as_bytes()), (TypeMarker::String, &b"Ada"[..]));
    /// ```
    pub fn string(s: &'a str) -> Self {
        Plaintext {
            marker: TypeMarker::String,
            bytes: PlaintextBytes::Borrowed(s.as_bytes()),
        }
    }

    /// A boolean leaf: a little-endian int64 1 or 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    ///
    /// let pt = Plaintext::boolean(false);
    /// assert_eq!((pt.marker(), pt.as_bytes()), (TypeMarker::Boolean, &[0u8; 8][..]));
    /// ```
    pub fn boolean(b: bool) -> Plaintext<'static> {
        Plaintext::fixed(TypeMarker::Boolean, i64::from(b).to_le_bytes())
    }

    /// An integer stored as a Long.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    ///
    /// let pt = Plaintext::long(-2);
    /// assert_eq!(pt.marker(), TypeMarker::Long);
    /// assert_eq!(pt.as_bytes(), (-2i64).to_le_bytes());
    /// ```
    pub fn long(n: i64) -> Plaintext<'static> {
        Plaintext::fixed(TypeMarker::Long, n.to_le_bytes())
    }

    /// A number stored as a Double.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedValue`] for NaN and infinities.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    ///
    /// let pt = Plaintext::double(1.5)?;
    /// assert_eq!(pt.marker(), TypeMarker::Double);
    /// assert_eq!(pt.as_bytes(), 1.5f64.to_le_bytes());
    /// assert!(matches!(Plaintext::double(f64::NAN), Err(Error::UnsupportedValue { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn double(x: f64) -> Result<Plaintext<'static>> {
        if !x.is_finite() {
            return Err(unsupported("NaN and infinite numbers cannot be stored"));
        }
        Ok(Plaintext::fixed(TypeMarker::Double, x.to_le_bytes()))
    }

    fn fixed(marker: TypeMarker, bytes: [u8; 8]) -> Plaintext<'static> {
        Plaintext {
            marker,
            bytes: PlaintextBytes::Fixed(Zeroizing::new(bytes)),
        }
    }

    /// Serializes a JSON leaf (string, number or boolean).
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedValue`] for `null`, objects and arrays (they are never
    /// encrypted as one value) and for numbers that cannot be stored exactly.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    /// use serde_json::json;
    ///
    /// let name = json!("Ada");
    /// assert_eq!(Plaintext::from_json(&name)?.as_bytes(), b"Ada");
    /// assert_eq!(Plaintext::from_json(&json!(7))?.marker(), TypeMarker::Long);
    /// for v in [json!(null), json!({"a": 1}), json!([1])] {
    ///     assert!(matches!(Plaintext::from_json(&v), Err(Error::UnsupportedValue { .. })));
    /// }
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_json(v: &'a Value) -> Result<Self> {
        match v {
            Value::String(s) => Ok(Plaintext::string(s)),
            Value::Bool(b) => Ok(Plaintext::boolean(*b)),
            Value::Number(n) => Plaintext::from_number(n),
            Value::Null => Err(unsupported("null is never encrypted")),
            Value::Object(_) | Value::Array(_) => Err(unsupported(
                "objects and arrays are encrypted leaf by leaf, not as one value",
            )),
        }
    }

    /// Serializes a parsed JSON number: an int64 is a Long, anything else a Double; `-0.0`
    /// is refused.
    ///
    /// `serde_json` has already decided the literal's fate: `1.0` is a Double, `1` a
    /// Long, an integer literal beyond the 64-bit range was rounded to a double by
    /// `serde_json` itself, and both `-0` and `-0.0` became the double `-0.0`. The text
    /// rule makes `-0` a Long 0 and `-0.0` a Double, so a `-0.0` here cannot be typed
    /// without guessing, and is refused. To classify exactly from the literal text, use
    /// [`from_number_literal`](Self::from_number_literal).
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedValue`] for `-0.0`, and for an integer above `i64::MAX` that
    /// has no exact double.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    /// use serde_json::Number;
    ///
    /// assert_eq!(Plaintext::from_number(&Number::from(1))?.marker(), TypeMarker::Long);
    /// // 2^63 is outside int64 but exact as a double; 2^64 - 1 is neither.
    /// let big = Number::from(1u64 << 63);
    /// assert_eq!(Plaintext::from_number(&big)?.marker(), TypeMarker::Double);
    /// assert!(Plaintext::from_number(&Number::from(u64::MAX)).is_err());
    /// // serde_json reads the literal -0 as -0.0: refused, where 0 and 0.0 are not.
    /// let negative_zero: Number = serde_json::from_str("-0")?;
    /// let refused = Plaintext::from_number(&negative_zero);
    /// assert!(matches!(refused, Err(Error::UnsupportedValue { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_number(n: &Number) -> Result<Plaintext<'static>> {
        if let Some(i) = n.as_i64() {
            return Ok(Plaintext::long(i));
        }
        if let Some(u) = n.as_u64() {
            return exact_u64_as_double(u);
        }
        match n.as_f64() {
            Some(x) if is_negative_zero(x) => Err(unsupported(NEGATIVE_ZERO)),
            Some(x) => Plaintext::double(x),
            None => Err(unsupported(
                "a number that is neither an integer nor a double",
            )),
        }
    }

    /// Serializes a JSON number from its literal text, by the .NET rule: an integer
    /// literal that fits int64 is a Long; a fraction or exponent is a Double; an integer
    /// outside int64 is a Double when the double is exact.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedValue`] when `lit` is not a JSON number literal, overflows a
    /// double, or is an integer that fits neither an int64 nor a double exactly.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    ///
    /// assert_eq!(Plaintext::from_number_literal("1")?.marker(), TypeMarker::Long);
    /// assert_eq!(Plaintext::from_number_literal("1.0")?.marker(), TypeMarker::Double);
    /// let exact = Plaintext::from_number_literal("9223372036854775808")?; // 2^63
    /// assert_eq!(exact.marker(), TypeMarker::Double);
    /// let inexact = Plaintext::from_number_literal("9223372036854775809");
    /// assert!(matches!(inexact, Err(Error::UnsupportedValue { .. })));
    /// assert!(Plaintext::from_number_literal("01").is_err());
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn from_number_literal(lit: &str) -> Result<Plaintext<'static>> {
        if !is_json_number(lit) {
            return Err(unsupported("not a JSON number literal"));
        }
        let is_integer = !lit.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
        if is_integer {
            if let Ok(i) = lit.parse::<i64>() {
                return Ok(Plaintext::long(i));
            }
            let x: f64 = lit
                .parse()
                .map_err(|_| unsupported("not a JSON number literal"))?;
            // The double is exact when printing it back gives the literal digits.
            if x.is_finite() && format!("{x:.0}") == lit {
                return Plaintext::double(x);
            }
            return Err(unsupported(&format!(
                "an integer literal of {} digits fits neither an int64 nor a double exactly; \
                 store it as a string",
                lit.trim_start_matches('-').len()
            )));
        }
        let x: f64 = lit
            .parse()
            .map_err(|_| unsupported("not a JSON number literal"))?;
        if !x.is_finite() {
            return Err(unsupported("a number literal beyond the range of a double"));
        }
        Plaintext::double(x)
    }

    /// The type marker.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    ///
    /// assert_eq!(Plaintext::string("x").marker(), TypeMarker::String);
    /// assert_eq!(Plaintext::long(1).marker() as u8, 4);
    /// ```
    pub fn marker(&self) -> TypeMarker {
        self.marker
    }

    /// The serialized plaintext bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::value::Plaintext;
    ///
    /// assert_eq!(Plaintext::long(1).as_bytes(), &[1, 0, 0, 0, 0, 0, 0, 0]);
    /// assert_eq!(Plaintext::string("é").as_bytes(), &[0xC3, 0xA9]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match &self.bytes {
            PlaintextBytes::Fixed(b) => &b[..],
            PlaintextBytes::Borrowed(b) => b,
        }
    }

    /// Turns decrypted plaintext bytes with their marker back into a JSON value.
    ///
    /// Payload lengths are checked: Boolean, Double and Long take exactly 8 bytes
    /// (a Boolean is true when its first byte is non-zero, as the SDKs read it).
    ///
    /// # Errors
    ///
    /// [`Error::MalformedCiphertext`] (with an empty key id) for the Null marker, a
    /// wrong payload length, a NaN or infinite double, or a string that is not UTF-8.
    ///
    /// # Examples
    ///
    /// ```
    /// use always_encrypted::Error;
    /// use always_encrypted::value::{Plaintext, TypeMarker};
    /// use serde_json::json;
    ///
    /// let bytes = 42i64.to_le_bytes();
    /// assert_eq!(Plaintext::to_json(TypeMarker::Long, &bytes)?, json!(42));
    /// let short = Plaintext::to_json(TypeMarker::Long, &bytes[..7]);
    /// assert!(matches!(short, Err(Error::MalformedCiphertext { .. })));
    /// # Ok::<(), always_encrypted::Error>(())
    /// ```
    pub fn to_json(marker: TypeMarker, bytes: &[u8]) -> Result<Value> {
        deserialize(marker, bytes).map_err(|reason| Error::MalformedCiphertext {
            path: String::new(),
            key_id: String::new(),
            reason,
        })
    }
}

const NEGATIVE_ZERO: &str = "-0.0 in a serde_json Value is ambiguous: serde_json reads both the \
     literal -0 (a Long 0 in JSON text) and -0.0 (a Double) as -0.0; encrypt the JSON text \
     instead (the text API types it from the literal), or use 0";

fn is_negative_zero(x: f64) -> bool {
    x == 0.0 && x.is_sign_negative()
}

/// A number literal typed as a Long (a query parameter with `NumberType::Long`): accepted
/// when the literal's value is an integer that fits int64 exactly, whatever its spelling
/// (`1.0`, `1E3`, `9.2e18` and `-0` are Longs 1, 1000, 9200000000000000000 and 0, as the
/// JavaScript SDK stores them). Decided on the decimal digits, never through a double.
pub(crate) fn long_from_literal(lit: &str) -> Result<Plaintext<'static>> {
    if !is_json_number(lit) {
        return Err(unsupported("not a JSON number literal"));
    }
    integral_literal(lit)
        .and_then(|n| i64::try_from(n).ok())
        .map(Plaintext::long)
        .ok_or_else(|| {
            unsupported(
                "the number is not an integer that fits an int64 exactly, so it cannot be a Long",
            )
        })
}

/// A number literal typed as a Double (a query parameter with `NumberType::Double`): an
/// integer literal must have an exact double; a fraction or exponent is read as a
/// document reads it.
pub(crate) fn double_from_literal(lit: &str) -> Result<Plaintext<'static>> {
    if !is_json_number(lit) {
        return Err(unsupported("not a JSON number literal"));
    }
    if lit.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Plaintext::from_number_literal(lit);
    }
    match lit.parse::<f64>() {
        // Exact when printing the double back gives the literal's digits (`-0` is -0.0).
        Ok(x) if x.is_finite() && format!("{x:.0}") == lit => Plaintext::double(x),
        _ => Err(unsupported(
            "the integer has no exact double, so it cannot be a Double",
        )),
    }
}

/// The value of a JSON number literal when it is an integer of at most 20 digits (so
/// that it fits an `i128`), from its decimal digits and exponent alone.
fn integral_literal(lit: &str) -> Option<i128> {
    let (negative, rest) = match lit.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, lit),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, "0"),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The exponent, saturated far beyond where any digit could still fit.
    let (exp_negative, exp_digits) = match exponent.as_bytes().first() {
        Some(b'-') => (true, &exponent[1..]),
        Some(b'+') => (false, &exponent[1..]),
        _ => (false, exponent),
    };
    let mut exp: i64 = 0;
    for d in exp_digits.bytes() {
        exp = (exp * 10 + i64::from(d - b'0')).min(1_000_000);
    }
    if exp_negative {
        exp = -exp;
    }
    let digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
    let first = digits.iter().position(|&d| d != b'0');
    let Some(first) = first else {
        return Some(0); // every digit zero: 0 (also -0 and -0.0e5)
    };
    let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
    let significant = &digits[first..=last];
    // The value is significant * 10^scale.
    let trailing_zeros = i64::try_from(digits.len() - 1 - last).ok()?;
    let frac_len = i64::try_from(frac_part.len()).ok()?;
    let scale = exp + trailing_zeros - frac_len;
    if scale < 0 {
        return None; // a fraction
    }
    let len = i64::try_from(significant.len()).ok()?;
    if len + scale > 20 {
        return None;
    }
    let mut n: i128 = 0;
    for &d in significant {
        n = n * 10 + i128::from(d - b'0');
    }
    for _ in 0..scale {
        n *= 10;
    }
    Some(if negative { -n } else { n })
}

/// A parsed number typed as a Long: an int64, or a double whose value is an integer that
/// fits int64 (`1.0`, `-0.0`).
pub(crate) fn long_from_number(n: &Number) -> Result<Plaintext<'static>> {
    if let Some(i) = n.as_i64() {
        return Ok(Plaintext::long(i));
    }
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    match n.as_f64() {
        Some(x) if n.is_f64() && x.fract() == 0.0 && (-TWO_63..TWO_63).contains(&x) => {
            // In range and integral, so the conversion is exact.
            #[allow(clippy::cast_possible_truncation)]
            Ok(Plaintext::long(x as i64))
        }
        _ => Err(unsupported(
            "the number is not an integer that fits an int64, so it cannot be a Long",
        )),
    }
}

/// A parsed number typed as a Double, refusing an integer that has no exact double.
pub(crate) fn double_from_number(n: &Number) -> Result<Plaintext<'static>> {
    let inexact = || unsupported("the number has no exact double, so it cannot be a Double");
    if let Some(i) = n.as_i64() {
        #[allow(clippy::cast_precision_loss)] // checked for exactness just below
        let x = i as f64;
        // i64::MAX as f64 is 2^63, which saturates back to i64::MAX: compare in i128.
        #[allow(clippy::cast_possible_truncation)]
        let back = x as i128;
        return if back == i128::from(i) {
            Plaintext::double(x)
        } else {
            Err(inexact())
        };
    }
    if let Some(u) = n.as_u64() {
        return exact_u64_as_double(u).map_err(|_| inexact());
    }
    Plaintext::double(n.as_f64().ok_or_else(inexact)?)
}

fn exact_u64_as_double(u: u64) -> Result<Plaintext<'static>> {
    #[allow(clippy::cast_precision_loss)] // checked for exactness just below
    let x = u as f64;
    // 2^64 itself does not fit a u64, so compare in u128.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let back = x as u128;
    if back == u128::from(u) {
        Plaintext::double(x)
    } else {
        Err(unsupported(
            "an integer above int64 that has no exact double; store it as a string",
        ))
    }
}

/// RFC 8259 number grammar: `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// An 8-byte payload (Boolean, Long, Double), or the reason `what`.
pub(crate) fn fixed8(
    bytes: &[u8],
    what: &'static str,
) -> std::result::Result<[u8; 8], &'static str> {
    bytes.try_into().map_err(|_| what)
}

fn deserialize(marker: TypeMarker, bytes: &[u8]) -> std::result::Result<Value, &'static str> {
    Ok(match marker {
        TypeMarker::Null => return Err("the Null type marker is never encrypted"),
        TypeMarker::Boolean => {
            let b = fixed8(bytes, "a Boolean payload must be 8 bytes")?;
            Value::Bool(b[0] != 0)
        }
        TypeMarker::Long => Value::from(i64::from_le_bytes(fixed8(
            bytes,
            "a Long payload must be 8 bytes",
        )?)),
        TypeMarker::Double => {
            let x = f64::from_le_bytes(fixed8(bytes, "a Double payload must be 8 bytes")?);
            Value::Number(Number::from_f64(x).ok_or("a Double payload is NaN or infinite")?)
        }
        TypeMarker::String => Value::String(
            std::str::from_utf8(bytes)
                .map_err(|_| "a String payload is not valid UTF-8")?
                .to_owned(),
        ),
    })
}

fn unsupported(reason: &str) -> Error {
    Error::UnsupportedValue {
        path: String::new(),
        reason: reason.to_owned(),
    }
}

/// The base64 alphabet of a stored value.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
/// use always_encrypted::value::{Alphabet, Plaintext, encrypt_to_stored};
/// # use always_encrypted::keys::DataEncryptionKey;
/// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
///
/// assert_eq!(Alphabet::default(), Alphabet::Standard);
/// let id = Plaintext::string("order-42");
/// let stored = encrypt_to_stored(&key, EncryptionType::Deterministic, &id, Alphabet::UrlSafe)?;
/// assert!(!stored.contains('+') && !stored.contains('/'));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Alphabet {
    /// Standard base64 with padding: every stored value but the id.
    #[default]
    Standard,
    /// URL-safe base64 (`-` and `_`) with padding: the encrypted `/id`, which Cosmos puts
    /// in resource URLs.
    UrlSafe,
}

impl Alphabet {
    fn engine(self) -> &'static base64::engine::GeneralPurpose {
        match self {
            Alphabet::Standard => &STANDARD,
            Alphabet::UrlSafe => &URL_SAFE,
        }
    }
}

/// Encrypts a serialized leaf and returns its stored form,
/// `base64(type_marker || ciphertext)`.
///
/// # Errors
///
/// As [`CbcHmacKey::encrypt`]: [`Error::Random`] when randomized encryption cannot get
/// an IV.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
/// use always_encrypted::value::{Alphabet, Plaintext, decrypt_stored, encrypt_to_stored};
/// use serde_json::json;
/// # use always_encrypted::keys::DataEncryptionKey;
/// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
///
/// let pt = Plaintext::long(42);
/// let stored = encrypt_to_stored(&key, EncryptionType::Deterministic, &pt, Alphabet::Standard)?;
/// assert!(stored.starts_with("BA")); // base64 of the Long marker 0x04 and the version 0x01
/// assert_eq!(decrypt_stored(&key, &stored, Alphabet::Standard)?, json!(42));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn encrypt_to_stored(
    key: &CbcHmacKey,
    mode: EncryptionType,
    plaintext: &Plaintext<'_>,
    alphabet: Alphabet,
) -> Result<String> {
    let mut scratch = Vec::new();
    let mut out = String::new();
    encrypt_to_stored_into(key, mode, plaintext, alphabet, &mut scratch, &mut out)?;
    Ok(out)
}

/// Like [`encrypt_to_stored`], but appends the stored form to `out`, using `scratch`
/// (cleared first) for the binary ciphertext, so a caller encrypting many values can
/// reuse both buffers.
///
/// # Errors
///
/// As [`encrypt_to_stored`]; `out` is unchanged on error.
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
/// use always_encrypted::value::{Alphabet, Plaintext, decrypt_stored, encrypt_to_stored_into};
/// use serde_json::json;
/// # use always_encrypted::keys::DataEncryptionKey;
/// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
///
/// let (mut scratch, mut out) = (Vec::new(), String::new());
/// let mode = EncryptionType::Randomized;
/// for name in ["Ada", "Grace"] {
///     out.clear();
///     let pt = Plaintext::string(name);
///     encrypt_to_stored_into(&key, mode, &pt, Alphabet::Standard, &mut scratch, &mut out)?;
///     assert_eq!(decrypt_stored(&key, &out, Alphabet::Standard)?, json!(name));
/// }
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn encrypt_to_stored_into(
    key: &CbcHmacKey,
    mode: EncryptionType,
    plaintext: &Plaintext<'_>,
    alphabet: Alphabet,
    scratch: &mut Vec<u8>,
    out: &mut String,
) -> Result<()> {
    scratch.clear();
    scratch.reserve(1 + CbcHmacKey::ciphertext_len(plaintext.as_bytes().len()));
    scratch.push(plaintext.marker() as u8);
    key.encrypt_into(plaintext.as_bytes(), mode, scratch)?;
    alphabet.engine().encode_string(&scratch[..], out);
    Ok(())
}

/// Decodes and decrypts a stored value back into a JSON value.
///
/// # Errors
///
/// [`Error::MalformedCiphertext`] for bad base64, an unknown or Null type marker, a
/// ciphertext of the wrong shape, or a payload that does not fit its marker;
/// [`Error::DecryptionFailed`] when authentication fails (tampered, wrong key).
///
/// # Examples
///
/// ```
/// use always_encrypted::Error;
/// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
/// use always_encrypted::value::{Alphabet, Plaintext, decrypt_stored, encrypt_to_stored};
/// use serde_json::json;
/// # use always_encrypted::keys::DataEncryptionKey;
/// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
///
/// let pt = Plaintext::string("123-45-6789");
/// let stored = encrypt_to_stored(&key, EncryptionType::Randomized, &pt, Alphabet::Standard)?;
/// assert_eq!(decrypt_stored(&key, &stored, Alphabet::Standard)?, json!("123-45-6789"));
/// let bad = decrypt_stored(&key, "not base64!", Alphabet::Standard);
/// assert!(matches!(bad, Err(Error::MalformedCiphertext { .. })));
/// let other = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
/// let wrong_key = decrypt_stored(&other, &stored, Alphabet::Standard);
/// assert!(matches!(wrong_key, Err(Error::DecryptionFailed { .. })));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn decrypt_stored(key: &CbcHmacKey, stored: &str, alphabet: Alphabet) -> Result<Value> {
    let malformed = |reason| Error::MalformedCiphertext {
        path: String::new(),
        key_id: key.key_id().to_owned(),
        reason,
    };
    let raw = alphabet
        .engine()
        .decode(stored)
        .map_err(|_| malformed("not valid base64"))?;
    let (&marker, ciphertext) = raw.split_first().ok_or(malformed("empty value"))?;
    let marker = TypeMarker::try_from(marker).map_err(|_| malformed("unknown type marker"))?;
    if marker == TypeMarker::Null {
        return Err(malformed("the Null type marker is never encrypted"));
    }
    let plaintext = key.decrypt(ciphertext)?;
    deserialize(marker, &plaintext).map_err(malformed)
}

/// Encrypts one JSON leaf into its stored JSON string; `null` stays `null`.
///
/// # Errors
///
/// As [`Plaintext::from_json`] and [`encrypt_to_stored`].
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
/// use always_encrypted::keys::DataEncryptionKey;
/// use always_encrypted::value::{decrypt_value, encrypt_value, Alphabet};
/// use serde_json::json;
///
/// let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
/// let stored = encrypt_value(&key, EncryptionType::Randomized, &json!(42))?;
/// assert!(stored.is_string());
/// assert_eq!(decrypt_value(&key, &stored)?, json!(42));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn encrypt_value(key: &CbcHmacKey, mode: EncryptionType, v: &Value) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let pt = Plaintext::from_json(v)?;
    Ok(Value::String(encrypt_to_stored(
        key,
        mode,
        &pt,
        Alphabet::Standard,
    )?))
}

/// Decrypts one stored JSON value (a string in the standard alphabet); `null` stays
/// `null`.
///
/// # Errors
///
/// [`Error::MalformedCiphertext`] when `v` is neither a string nor `null`, and as
/// [`decrypt_stored`].
///
/// # Examples
///
/// ```
/// use always_encrypted::Error;
/// use always_encrypted::cipher::{CbcHmacKey, EncryptionType};
/// use always_encrypted::value::{decrypt_value, encrypt_value};
/// use serde_json::json;
/// # use always_encrypted::keys::DataEncryptionKey;
/// # let key = CbcHmacKey::new("cek1", &DataEncryptionKey::generate()?);
///
/// let stored = encrypt_value(&key, EncryptionType::Deterministic, &json!(true))?;
/// assert_eq!(decrypt_value(&key, &stored)?, json!(true));
/// assert_eq!(decrypt_value(&key, &json!(null))?, json!(null));
/// let not_stored = decrypt_value(&key, &json!(7));
/// assert!(matches!(not_stored, Err(Error::MalformedCiphertext { .. })));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn decrypt_value(key: &CbcHmacKey, v: &Value) -> Result<Value> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::String(s) => decrypt_stored(key, s, Alphabet::Standard),
        _ => Err(Error::MalformedCiphertext {
            path: String::new(),
            key_id: key.key_id().to_owned(),
            reason: "an encrypted value must be a JSON string",
        }),
    }
}

// ---- Buffer-reusing helpers for the document walker (crate-internal) ----

/// Like [`encrypt_to_stored_into`], but appends the stored form to a byte buffer (the
/// document walker writes JSON text as bytes). `out` is unchanged on error.
pub(crate) fn encrypt_to_stored_bytes_into(
    key: &CbcHmacKey,
    mode: EncryptionType,
    plaintext: &Plaintext<'_>,
    alphabet: Alphabet,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<()> {
    scratch.clear();
    scratch.reserve(1 + CbcHmacKey::ciphertext_len(plaintext.as_bytes().len()));
    scratch.push(plaintext.marker() as u8);
    key.encrypt_into(plaintext.as_bytes(), mode, scratch)?;
    let internal = || Error::UnsupportedValue {
        path: String::new(),
        reason: "internal error: base64 length".into(),
    };
    let len = base64::encoded_len(scratch.len(), true).ok_or_else(internal)?;
    let start = out.len();
    out.resize(start + len, 0);
    match alphabet
        .engine()
        .encode_slice(&scratch[..], &mut out[start..])
    {
        Ok(n) if n == len => Ok(()),
        _ => {
            out.truncate(start);
            Err(internal())
        }
    }
}

/// Decodes `stored` in `alphabet` into `raw` (cleared first).
fn decode_into(stored: &str, alphabet: Alphabet, raw: &mut Vec<u8>) -> std::result::Result<(), ()> {
    raw.clear();
    alphabet.engine().decode_vec(stored, raw).map_err(|_| ())
}

/// A [`Error::MalformedCiphertext`] naming `key_id`, with the path filled in later.
fn malformed_for(key_id: &str, reason: &'static str) -> Error {
    Error::MalformedCiphertext {
        path: String::new(),
        key_id: key_id.to_owned(),
        reason,
    }
}

/// Decodes and decrypts a stored value, leaving the serialized plaintext in `plain` and
/// returning its type marker. `raw` is scratch space for the decoded bytes. Reusing both
/// buffers, a caller decrypting many values allocates nothing per value.
///
/// Errors as [`decrypt_stored`]; a payload that does not fit its marker is found later, by
/// [`plaintext_to_json`] or [`write_plaintext_json`].
pub(crate) fn decrypt_stored_into(
    key: &CbcHmacKey,
    stored: &str,
    alphabet: Alphabet,
    raw: &mut Vec<u8>,
    plain: &mut Zeroizing<Vec<u8>>,
) -> Result<TypeMarker> {
    let malformed = |reason| malformed_for(key.key_id(), reason);
    decode_into(stored, alphabet, raw).map_err(|()| malformed("not valid base64"))?;
    let (&marker, ciphertext) = raw.split_first().ok_or(malformed("empty value"))?;
    let marker = TypeMarker::try_from(marker).map_err(|_| malformed("unknown type marker"))?;
    if marker == TypeMarker::Null {
        return Err(malformed("the Null type marker is never encrypted"));
    }
    key.decrypt_into(ciphertext, plain)?;
    Ok(marker)
}

// ---- AE1 (the modern suite): the stored form is base64(AE1 bytes), no separate marker ----

/// Encrypts one JSON leaf with the `AE1` suite into its stored JSON string,
/// `base64(AE1 bytes)` in the standard alphabet (the type marker is inside, authenticated);
/// `null` stays `null`. The value is bound to `key`'s key id and path.
///
/// # Errors
///
/// As [`Plaintext::from_json`] and [`ModernKey::encrypt`].
///
/// # Examples
///
/// ```
/// use always_encrypted::cipher::{EncryptionType, ModernKey};
/// use always_encrypted::keys::DataEncryptionKey;
/// use always_encrypted::value::{decrypt_value_ae1, encrypt_value_ae1};
/// use serde_json::json;
///
/// let dek = DataEncryptionKey::generate()?;
/// let age = ModernKey::new(&dek, "cek1", "/age", EncryptionType::Deterministic);
/// let stored = encrypt_value_ae1(&age, &json!(42))?;
/// assert_eq!(decrypt_value_ae1(&age, &stored)?, json!(42));
/// let other = ModernKey::new(&dek, "cek1", "/score", EncryptionType::Deterministic);
/// assert!(decrypt_value_ae1(&other, &stored).is_err());
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn encrypt_value_ae1(key: &ModernKey, v: &Value) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let pt = Plaintext::from_json(v)?;
    let mut out = String::new();
    ae1_encrypt_to_stored_into(key, &pt, Alphabet::Standard, &mut Vec::new(), &mut out)?;
    Ok(Value::String(out))
}

/// Decrypts one `AE1` stored JSON value (a string in the standard alphabet); `null` stays
/// `null`.
///
/// # Errors
///
/// [`Error::MalformedCiphertext`] when `v` is neither a string nor `null`, for bad base64,
/// a value that is not `AE1`, or a payload that does not fit its marker;
/// [`Error::DecryptionFailed`] when authentication fails (tampered, another key, path or
/// mode, a changed marker).
///
/// # Examples
///
/// ```
/// use always_encrypted::Error;
/// use always_encrypted::cipher::{EncryptionType, ModernKey};
/// use always_encrypted::value::{decrypt_value_ae1, encrypt_value_ae1};
/// use serde_json::json;
/// # use always_encrypted::keys::DataEncryptionKey;
/// # let dek = DataEncryptionKey::generate()?;
///
/// let ssn = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Randomized);
/// let stored = encrypt_value_ae1(&ssn, &json!("123-45-6789"))?;
/// assert_eq!(decrypt_value_ae1(&ssn, &stored)?, json!("123-45-6789"));
/// let det = ModernKey::new(&dek, "cek1", "/ssn", EncryptionType::Deterministic);
/// assert!(matches!(decrypt_value_ae1(&det, &stored), Err(Error::DecryptionFailed { .. })));
/// # Ok::<(), always_encrypted::Error>(())
/// ```
pub fn decrypt_value_ae1(key: &ModernKey, v: &Value) -> Result<Value> {
    let malformed = |reason| Error::MalformedCiphertext {
        path: key.path().to_owned(),
        key_id: key.key_id().to_owned(),
        reason,
    };
    let stored = match v {
        Value::Null => return Ok(Value::Null),
        Value::String(s) => s,
        _ => return Err(malformed("an encrypted value must be a JSON string")),
    };
    let mut plain = Zeroizing::new(Vec::new());
    let marker =
        ae1_decrypt_stored_into(key, stored, Alphabet::Standard, &mut Vec::new(), &mut plain)
            .map_err(|e| e.at_path(key.path()))?;
    deserialize(marker, &plain).map_err(malformed)
}

/// Appends `base64(AE1 bytes)` of `plaintext` to `out`, using `scratch` (cleared first) for
/// the binary form. `out` is unchanged on error.
pub(crate) fn ae1_encrypt_to_stored_into(
    key: &ModernKey,
    plaintext: &Plaintext<'_>,
    alphabet: Alphabet,
    scratch: &mut Vec<u8>,
    out: &mut String,
) -> Result<()> {
    scratch.clear();
    scratch.reserve(ModernKey::ciphertext_len(plaintext.as_bytes().len()));
    key.encrypt_into(plaintext.marker() as u8, plaintext.as_bytes(), scratch)?;
    alphabet.engine().encode_string(&scratch[..], out);
    Ok(())
}

/// Like [`ae1_encrypt_to_stored_into`], appending to a byte buffer.
pub(crate) fn ae1_encrypt_to_stored_bytes_into(
    key: &ModernKey,
    plaintext: &Plaintext<'_>,
    alphabet: Alphabet,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<()> {
    scratch.clear();
    scratch.reserve(ModernKey::ciphertext_len(plaintext.as_bytes().len()));
    key.encrypt_into(plaintext.marker() as u8, plaintext.as_bytes(), scratch)?;
    append_base64(&scratch[..], alphabet, out)
}

/// Decodes and decrypts an `AE1` stored value into `plain`; returns its (authenticated)
/// type marker. Errors name the key id; a payload that does not fit its marker is found
/// later, as for the Cosmos form.
pub(crate) fn ae1_decrypt_stored_into(
    key: &ModernKey,
    stored: &str,
    alphabet: Alphabet,
    raw: &mut Vec<u8>,
    plain: &mut Zeroizing<Vec<u8>>,
) -> Result<TypeMarker> {
    let malformed = |reason| malformed_for(key.key_id(), reason);
    decode_into(stored, alphabet, raw).map_err(|()| malformed("not valid base64"))?;
    if raw.first().is_some_and(|b| (1..=5).contains(b)) {
        return Err(malformed(
            "a value in the Cosmos format (AEAD_AES_256_CBC_HMAC_SHA256) on an AE1 path",
        ));
    }
    let marker = key.decrypt_into(raw, plain)?;
    match TypeMarker::try_from(marker) {
        Ok(TypeMarker::Null) | Err(_) => {
            plain.fill(0);
            plain.clear();
            Err(malformed("an unknown or Null type marker"))
        }
        Ok(m) => Ok(m),
    }
}

fn append_base64(bytes: &[u8], alphabet: Alphabet, out: &mut Vec<u8>) -> Result<()> {
    let internal = || Error::UnsupportedValue {
        path: String::new(),
        reason: "internal error: base64 length".into(),
    };
    let len = base64::encoded_len(bytes.len(), true).ok_or_else(internal)?;
    let start = out.len();
    out.resize(start + len, 0);
    match alphabet.engine().encode_slice(bytes, &mut out[start..]) {
        Ok(n) if n == len => Ok(()),
        _ => {
            out.truncate(start);
            Err(internal())
        }
    }
}

/// Decrypted plaintext bytes with their marker as a JSON value; the reason on error.
pub(crate) fn plaintext_to_json(
    marker: TypeMarker,
    bytes: &[u8],
) -> std::result::Result<Value, &'static str> {
    deserialize(marker, bytes)
}

/// Writes decrypted plaintext bytes with their marker as JSON text, exactly as
/// `serde_json` would print [`plaintext_to_json`]'s value; the reason on error (then `out`
/// may hold a partial value: the caller discards it). Every growth of `out`, which holds
/// the values decrypted before, wipes the allocation it leaves.
pub(crate) fn write_plaintext_json(
    marker: TypeMarker,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), &'static str> {
    const WRITE: &str = "internal error: writing JSON";
    let mut w = WipingWriter(out);
    match marker {
        TypeMarker::Null => return Err("the Null type marker is never encrypted"),
        TypeMarker::Boolean => {
            let b = fixed8(bytes, "a Boolean payload must be 8 bytes")?;
            let text: &[u8] = if b[0] != 0 { b"true" } else { b"false" };
            w.write_all(text).map_err(|_| WRITE)?;
        }
        TypeMarker::Long => {
            let n = i64::from_le_bytes(fixed8(bytes, "a Long payload must be 8 bytes")?);
            serde_json::to_writer(&mut w, &n).map_err(|_| WRITE)?;
        }
        TypeMarker::Double => {
            let x = f64::from_le_bytes(fixed8(bytes, "a Double payload must be 8 bytes")?);
            if !x.is_finite() {
                return Err("a Double payload is NaN or infinite");
            }
            serde_json::to_writer(&mut w, &x).map_err(|_| WRITE)?;
        }
        TypeMarker::String => {
            let s =
                std::str::from_utf8(bytes).map_err(|_| "a String payload is not valid UTF-8")?;
            serde_json::to_writer(&mut w, s).map_err(|_| WRITE)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DataEncryptionKey;
    use proptest::prelude::*;
    use serde_json::json;

    fn key() -> CbcHmacKey {
        CbcHmacKey::new("k", &DataEncryptionKey::from_bytes(&[3; 32]).unwrap())
    }

    #[test]
    fn ae1_values_round_trip_and_refuse_other_forms() {
        let dek = DataEncryptionKey::from_bytes(&[3; 32]).unwrap();
        let k = ModernKey::new(&dek, "k", "/p", EncryptionType::Randomized);
        for v in [
            json!("s"),
            json!(""),
            json!(-7),
            json!(2.5),
            json!(true),
            json!(false),
        ] {
            let stored = encrypt_value_ae1(&k, &v).unwrap();
            let raw = STANDARD.decode(stored.as_str().unwrap()).unwrap();
            assert_eq!(raw[0], crate::cipher::modern::VERSION);
            assert_eq!(raw[2], Plaintext::from_json(&v).unwrap().marker() as u8);
            assert_eq!(decrypt_value_ae1(&k, &stored).unwrap(), v);
        }
        assert_eq!(encrypt_value_ae1(&k, &Value::Null).unwrap(), Value::Null);
        assert_eq!(decrypt_value_ae1(&k, &Value::Null).unwrap(), Value::Null);
        // A Cosmos value, a number, bad base64: malformed, naming the path and key.
        let cosmos = encrypt_value(&key(), EncryptionType::Randomized, &json!("s")).unwrap();
        for bad in [cosmos, json!(1), json!("%%")] {
            match decrypt_value_ae1(&k, &bad) {
                Err(Error::MalformedCiphertext { path, key_id, .. }) => {
                    assert_eq!((path.as_str(), key_id.as_str()), ("/p", "k"));
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        // An authenticated but unknown marker is refused after decryption.
        let mut raw = Vec::new();
        k.encrypt_into(9, b"x", &mut raw).unwrap();
        let v = Value::String(STANDARD.encode(&raw));
        assert!(matches!(
            decrypt_value_ae1(&k, &v),
            Err(Error::MalformedCiphertext { .. })
        ));
    }

    fn literal(lit: &str) -> Result<(TypeMarker, Vec<u8>)> {
        Plaintext::from_number_literal(lit).map(|p| (p.marker(), p.as_bytes().to_vec()))
    }

    #[test]
    fn number_literals_follow_the_dotnet_rule() {
        assert_eq!(
            literal("42").unwrap(),
            (TypeMarker::Long, 42i64.to_le_bytes().to_vec())
        );
        assert_eq!(literal("-0").unwrap().0, TypeMarker::Long);
        assert_eq!(literal("9223372036854775807").unwrap().0, TypeMarker::Long);
        assert_eq!(
            literal("1.0").unwrap(),
            (TypeMarker::Double, 1.0f64.to_le_bytes().to_vec())
        );
        assert_eq!(literal("1e2").unwrap().0, TypeMarker::Double);
        assert_eq!(literal("-0.0").unwrap().1, (-0.0f64).to_le_bytes().to_vec());
        // 2^63: outside int64, exact as a double.
        assert_eq!(
            literal("9223372036854775808").unwrap(),
            (
                TypeMarker::Double,
                9.223_372_036_854_776e18f64.to_le_bytes().to_vec()
            )
        );
        // 2^63 + 1 is not a double: refused, not rounded.
        assert!(matches!(
            literal("9223372036854775809"),
            Err(Error::UnsupportedValue { .. })
        ));
        assert!(literal("123456789012345678901234567890").is_err());
        assert!(literal("1e400").is_err());
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "+1", "NaN", "Infinity", "0x10", " 1",
        ] {
            assert!(literal(bad).is_err(), "{bad:?}");
        }
    }

    fn typed(r: Result<Plaintext<'static>>) -> Option<(TypeMarker, Vec<u8>)> {
        r.ok().map(|p| (p.marker(), p.as_bytes().to_vec()))
    }

    fn long(n: i64) -> Option<(TypeMarker, Vec<u8>)> {
        Some((TypeMarker::Long, n.to_le_bytes().to_vec()))
    }

    fn double(x: f64) -> Option<(TypeMarker, Vec<u8>)> {
        Some((TypeMarker::Double, x.to_le_bytes().to_vec()))
    }

    #[test]
    fn a_parsed_negative_zero_is_refused_as_ambiguous() {
        // serde_json reads `-0` (Long 0 in text) and `-0.0` (a Double) alike.
        for text in ["-0", "-0.0", "-0e3", "-1e-400"] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert!(
                matches!(
                    Plaintext::from_json(&v),
                    Err(Error::UnsupportedValue { .. })
                ),
                "{text}"
            );
        }
        assert_eq!(literal("-0").unwrap(), (TypeMarker::Long, vec![0; 8]));
        assert_eq!(
            literal("-0.0").unwrap(),
            (TypeMarker::Double, (-0.0f64).to_le_bytes().to_vec())
        );
        // 0 and 0.0 are not ambiguous.
        for (text, marker) in [("0", TypeMarker::Long), ("0.0", TypeMarker::Double)] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(Plaintext::from_json(&v).unwrap().marker(), marker);
        }
    }

    #[test]
    fn long_literals_accept_exact_integral_values_only() {
        for (lit, n) in [
            ("1.0", 1),
            ("0.0", 0),
            ("-0", 0),
            ("-0.0", 0),
            ("1E3", 1000),
            ("1e+3", 1000),
            ("9.2e18", 9_200_000_000_000_000_000),
            ("-9223372036854775808", i64::MIN),
            ("-9.223372036854775808e18", i64::MIN),
            ("9223372036854775807", i64::MAX),
            ("922337203685477580.70e1", i64::MAX),
            ("1000e-3", 1),
            ("0.000e999999999999999999", 0),
            ("42", 42),
        ] {
            assert_eq!(typed(long_from_literal(lit)), long(n), "{lit}");
        }
        for lit in [
            "1.5",
            "1500e-3",
            "1e19",
            "9223372036854775808",
            "-9223372036854775809",
            "1e-400",
            "1e999999999999999999",
            "123456789012345678901234567890",
            "0.1",
            "01",
            "",
            "1.",
        ] {
            assert!(
                matches!(long_from_literal(lit), Err(Error::UnsupportedValue { .. })),
                "{lit}"
            );
        }
    }

    #[test]
    fn double_literals_need_an_exact_double_for_integers() {
        assert_eq!(typed(double_from_literal("42")), double(42.0));
        assert_eq!(typed(double_from_literal("-0")), double(-0.0));
        assert_eq!(typed(double_from_literal("1.5")), double(1.5));
        assert_eq!(typed(double_from_literal("1e23")), double(1e23));
        assert_eq!(
            typed(double_from_literal("9223372036854775808")),
            double(9_223_372_036_854_775_808.0)
        );
        // A fraction is read as a document reads it (rounded to the nearest double).
        assert_eq!(
            typed(double_from_literal("9007199254740993.0")),
            typed(Plaintext::from_number_literal("9007199254740993.0"))
        );
        for lit in ["9007199254740993", "100000000000000000000000", "1e400", "x"] {
            assert!(double_from_literal(lit).is_err(), "{lit}");
        }
    }

    #[test]
    fn numbers_typed_as_long_or_double() {
        let n = |text: &str| serde_json::from_str::<Number>(text).unwrap();
        assert_eq!(typed(long_from_number(&n("3"))), long(3));
        assert_eq!(typed(long_from_number(&n("1.0"))), long(1));
        assert_eq!(typed(long_from_number(&n("-0.0"))), long(0));
        assert_eq!(
            typed(long_from_number(&n("9.2e18"))),
            long(9_200_000_000_000_000_000)
        );
        assert_eq!(
            typed(long_from_number(&n("-9.223372036854775808e18"))),
            long(i64::MIN)
        );
        for bad in [
            "1.5",
            "9.223372036854775808e18",
            "9223372036854775808",
            "1e300",
        ] {
            assert!(long_from_number(&n(bad)).is_err(), "{bad}");
        }
        assert_eq!(typed(double_from_number(&n("3"))), double(3.0));
        assert_eq!(typed(double_from_number(&n("-0.0"))), double(-0.0));
        assert_eq!(
            typed(double_from_number(&n("9007199254740992"))),
            double(9_007_199_254_740_992.0)
        );
        assert!(double_from_number(&n("9007199254740993")).is_err());
        assert!(double_from_number(&n("9223372036854775807")).is_err());
        assert_eq!(
            typed(double_from_number(&n("-9223372036854775808"))),
            double(-(2f64.powi(63)))
        );
        assert!(double_from_number(&n("18446744073709551615")).is_err());
        assert_eq!(typed(double_from_number(&n("2.5"))), double(2.5));
    }

    #[test]
    fn error_messages_do_not_echo_the_value() {
        let e = literal("9223372036854775809").unwrap_err().to_string();
        assert!(!e.contains("9223372036854775809"), "{e}");
    }

    #[test]
    fn parsed_numbers() {
        let v: Value =
            serde_json::from_str("[1, 1.0, 18446744073709551615, 9223372036854775808, -5]")
                .unwrap();
        let m: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|n| Plaintext::from_json(n).map(|p| p.marker()))
            .collect();
        assert_eq!(m[0].as_ref().unwrap(), &TypeMarker::Long);
        assert_eq!(m[1].as_ref().unwrap(), &TypeMarker::Double);
        assert!(m[2].is_err(), "2^64-1 has no exact double");
        assert_eq!(m[3].as_ref().unwrap(), &TypeMarker::Double);
        assert_eq!(m[4].as_ref().unwrap(), &TypeMarker::Long);
    }

    #[test]
    fn null_objects_arrays_are_not_leaves() {
        for v in [json!(null), json!({}), json!([1])] {
            assert!(Plaintext::from_json(&v).is_err());
        }
        assert!(Plaintext::double(f64::NAN).is_err());
        assert!(Plaintext::double(f64::INFINITY).is_err());
    }

    #[test]
    fn payload_checks() {
        use TypeMarker::*;
        assert_eq!(
            Plaintext::to_json(Boolean, &[1, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            json!(true)
        );
        assert_eq!(Plaintext::to_json(Boolean, &[0; 8]).unwrap(), json!(false));
        for m in [Boolean, Long, Double] {
            assert!(Plaintext::to_json(m, &[0; 7]).is_err());
            assert!(Plaintext::to_json(m, &[0; 9]).is_err());
        }
        assert!(Plaintext::to_json(Double, &f64::NAN.to_le_bytes()).is_err());
        assert!(Plaintext::to_json(Double, &f64::NEG_INFINITY.to_le_bytes()).is_err());
        assert!(Plaintext::to_json(String, &[0xff]).is_err());
        assert!(Plaintext::to_json(Null, &[]).is_err());
        assert_eq!(Plaintext::to_json(String, b"").unwrap(), json!(""));
        assert!(TypeMarker::try_from(0).is_err());
        assert!(TypeMarker::try_from(6).is_err());
    }

    #[test]
    fn stored_form_rejects_bad_markers_and_base64() {
        let k = key();
        let stored = encrypt_value(&k, EncryptionType::Randomized, &json!("x")).unwrap();
        let s = stored.as_str().unwrap();
        let mut raw = STANDARD.decode(s).unwrap();
        for m in [0u8, 1, 6, 255] {
            raw[0] = m;
            let r = decrypt_stored(&k, &STANDARD.encode(&raw), Alphabet::Standard);
            assert!(
                matches!(r, Err(Error::MalformedCiphertext { .. })),
                "marker {m}"
            );
        }
        // A string payload relabelled Long has the wrong length.
        raw[0] = TypeMarker::Long as u8;
        assert!(matches!(
            decrypt_stored(&k, &STANDARD.encode(&raw), Alphabet::Standard),
            Err(Error::MalformedCiphertext { .. })
        ));
        for bad in ["", "!!!!", "QQ", "QR==", &s[1..]] {
            assert!(
                matches!(
                    decrypt_stored(&k, bad, Alphabet::Standard),
                    Err(Error::MalformedCiphertext { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(decrypt_value(&k, &json!(5)).is_err());
        assert_eq!(decrypt_value(&k, &json!(null)).unwrap(), json!(null));
    }

    #[test]
    fn url_safe_alphabet() {
        let k = key();
        for i in 0..64 {
            let v = format!("id-{i}");
            let pt = Plaintext::string(&v);
            let s = encrypt_to_stored(&k, EncryptionType::Deterministic, &pt, Alphabet::UrlSafe)
                .unwrap();
            assert!(!s.contains('/') && !s.contains('+'));
            assert_eq!(decrypt_stored(&k, &s, Alphabet::UrlSafe).unwrap(), json!(v));
        }
    }

    fn roundtrip(v: &Value, mode: EncryptionType) -> Value {
        let k = key();
        let stored = encrypt_value(&k, mode, v).unwrap();
        decrypt_value(&k, &stored).unwrap()
    }

    proptest! {
        #[test]
        fn strings_round_trip(s in any::<String>(), det in any::<bool>()) {
            let mode = if det { EncryptionType::Deterministic } else { EncryptionType::Randomized };
            prop_assert_eq!(roundtrip(&json!(s), mode), json!(s));
        }

        #[test]
        fn longs_round_trip(n in any::<i64>(), det in any::<bool>()) {
            let mode = if det { EncryptionType::Deterministic } else { EncryptionType::Randomized };
            prop_assert_eq!(roundtrip(&json!(n), mode), json!(n));
        }

        #[test]
        fn doubles_round_trip_bit_exact(bits in any::<u64>(), det in any::<bool>()) {
            let x = f64::from_bits(bits);
            prop_assume!(x.is_finite());
            let mode = if det { EncryptionType::Deterministic } else { EncryptionType::Randomized };
            let k = key();
            let pt = Plaintext::double(x).unwrap();
            let s = encrypt_to_stored(&k, mode, &pt, Alphabet::Standard).unwrap();
            let back = decrypt_stored(&k, &s, Alphabet::Standard).unwrap();
            prop_assert_eq!(back.as_f64().unwrap().to_bits(), bits);
        }

        #[test]
        fn bools_round_trip(b in any::<bool>(), det in any::<bool>()) {
            let mode = if det { EncryptionType::Deterministic } else { EncryptionType::Randomized };
            prop_assert_eq!(roundtrip(&json!(b), mode), json!(b));
        }

        #[test]
        fn randomized_differs_deterministic_repeats(s in any::<String>()) {
            let k = key();
            let v = json!(s);
            let r1 = encrypt_value(&k, EncryptionType::Randomized, &v).unwrap();
            let r2 = encrypt_value(&k, EncryptionType::Randomized, &v).unwrap();
            prop_assert_ne!(r1, r2);
            let d1 = encrypt_value(&k, EncryptionType::Deterministic, &v).unwrap();
            let d2 = encrypt_value(&k, EncryptionType::Deterministic, &v).unwrap();
            prop_assert_eq!(d1, d2);
        }

        #[test]
        fn integer_literals_classify_like_parsed_numbers(n in any::<i64>()) {
            let lit = n.to_string();
            let p = Plaintext::from_number_literal(&lit).unwrap();
            prop_assert_eq!(p.marker(), TypeMarker::Long);
            prop_assert_eq!(p.as_bytes(), &n.to_le_bytes()[..]);
        }

        #[test]
        fn double_literals_parse_exactly(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            prop_assume!(x.is_finite());
            let lit = serde_json::to_string(&x).unwrap();
            let p = Plaintext::from_number_literal(&lit).unwrap();
            prop_assert_eq!(p.as_bytes(), &x.to_le_bytes()[..]);
        }
    }
}
