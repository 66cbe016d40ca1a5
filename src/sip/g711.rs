//! G.711 (ITU-T G.711, 1972): the µ-law and A-law companding of 16-bit
//! linear PCM to 8-bit codes, as in Sun Microsystems' public-domain
//! `g711.c` (the reference most implementations copy), and a tone
//! generator at the telephone rate of 8 kHz.
//!
//! Every function is total: any `i16` encodes, any `u8` decodes, nothing
//! panics. Codes decode to the middle of their quantisation interval, so
//! `encode(decode(c)) == c` for every code but µ-law's negative zero
//! (`0x7F`, which decodes to 0 and encodes back as `0xFF`), and
//! `decode(encode(decode(c))) == decode(c)` for all 256.

/// The sampling rate of G.711 audio, in samples per second.
pub const SAMPLE_RATE: u32 = 8000;

/// The sign bit of a code.
const SIGN_BIT: u8 = 0x80;
/// The quantisation bits of a code.
const QUANT_MASK: u8 = 0x0f;
/// The segment (exponent) bits of a code.
const SEG_MASK: u8 = 0x70;
/// Where the segment bits start.
const SEG_SHIFT: u8 = 4;
/// The bias µ-law adds to the magnitude before it finds the segment.
const ULAW_BIAS: i32 = 0x84;
/// The largest magnitude µ-law represents (of the 14-bit input).
const ULAW_CLIP: i32 = 8159;

/// The upper end of each A-law segment (of the 13-bit magnitude).
const SEG_AEND: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
/// The upper end of each µ-law segment (of the biased 14-bit magnitude).
const SEG_UEND: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];

/// The segment `value` falls in: the first whose end is at least
/// `value`, or 8 when it is past the last.
fn segment(value: i32, ends: &[i32; 8]) -> u8 {
    let mut seg = 0u8;
    for end in ends {
        if value <= *end {
            return seg;
        }
        seg += 1;
    }
    seg
}

/// The low byte of `v` (every caller has masked `v` to fit already).
fn low_byte(v: i32) -> u8 {
    u8::try_from(v & 0xff).unwrap_or(0)
}

/// Encodes one sample as µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 2;
    let mask = if pcm < 0 {
        pcm = -pcm;
        0x7f
    } else {
        0xff
    };
    let pcm = pcm.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(pcm, &SEG_UEND);
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let code = (seg << SEG_SHIFT) | (low_byte(pcm >> (seg + 1)) & QUANT_MASK);
    code ^ mask
}

/// Decodes one µ-law code.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let mut t = (i32::from(code & QUANT_MASK) << 3) + ULAW_BIAS;
    t <<= (code & SEG_MASK) >> SEG_SHIFT;
    let v = if code & SIGN_BIT != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    };
    // |v| is at most 32124.
    i16::try_from(v).unwrap_or(0)
}

/// Encodes one sample as A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3;
    let mask = if pcm >= 0 {
        0xd5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = segment(pcm, &SEG_AEND);
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let quant = if seg < 2 { pcm >> 1 } else { pcm >> seg };
    let code = (seg << SEG_SHIFT) | (low_byte(quant) & QUANT_MASK);
    code ^ mask
}

/// Decodes one A-law code.
pub fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mut t = i32::from(code & QUANT_MASK) << 4;
    let seg = (code & SEG_MASK) >> SEG_SHIFT;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    let v = if code & SIGN_BIT != 0 { t } else { -t };
    // |v| is at most 32256.
    i16::try_from(v).unwrap_or(0)
}

/// Encodes samples as µ-law.
pub fn encode_ulaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|s| linear_to_ulaw(*s)).collect()
}

/// Decodes µ-law codes.
pub fn decode_ulaw(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|c| ulaw_to_linear(*c)).collect()
}

/// Encodes samples as A-law.
pub fn encode_alaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|s| linear_to_alaw(*s)).collect()
}

/// Decodes A-law codes.
pub fn decode_alaw(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|c| alaw_to_linear(*c)).collect()
}

/// `n` samples of a sine of `freq_hz` and peak `amplitude` at 8 kHz,
/// from sample number `start_sample` on (so that consecutive calls
/// continue one another without a click).
pub fn tone(freq_hz: f64, amplitude: i16, start_sample: u64, n: usize) -> Vec<i16> {
    let step = 2.0 * std::f64::consts::PI * freq_hz / f64::from(SAMPLE_RATE);
    let amplitude = f64::from(amplitude);
    (0..n)
        .map(|i| {
            let k = start_sample.wrapping_add(i as u64);
            let v = (amplitude * (step * k as f64).sin()).round();
            // `as` saturates; |v| <= |amplitude| anyway.
            v as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0, "negative zero");
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xfe), 8);
        assert_eq!(ulaw_to_linear(0x7e), -8);
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(32124), 0x80);
        assert_eq!(linear_to_ulaw(-32124), 0x00);
        assert_eq!(linear_to_ulaw(8), 0xfe);
        assert_eq!(linear_to_ulaw(-8), 0x7e);
        assert_eq!(linear_to_ulaw(1000), 0xce);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
        assert_eq!(linear_to_alaw(1000), 0xfa);
    }

    #[test]
    fn every_code_survives_a_round_trip() {
        for code in 0..=u8::MAX {
            let u = ulaw_to_linear(code);
            assert_eq!(ulaw_to_linear(linear_to_ulaw(u)), u, "µ-law {code:#04x}");
            if code != 0x7f {
                assert_eq!(linear_to_ulaw(u), code, "µ-law {code:#04x}");
            }
            let a = alaw_to_linear(code);
            assert_eq!(alaw_to_linear(linear_to_alaw(a)), a, "A-law {code:#04x}");
            assert_eq!(linear_to_alaw(a), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn encoding_is_monotonic_and_close() {
        // Decoding an encoded sample lands within about half a step of
        // it (a step is 1/16 of the segment; the top one is 1024 wide),
        // and a louder sample never decodes quieter.
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            assert!(u >= last_u && a >= last_a, "{s}");
            let (eu, ea) = (
                (i32::from(u) - i32::from(s)).abs(),
                (i32::from(a) - i32::from(s)).abs(),
            );
            let bound = (i32::from(s).abs() / 16).max(16) + 700;
            assert!(eu <= bound && ea <= bound, "{s}: {u} {a}");
            last_u = u;
            last_a = a;
        }
    }

    #[test]
    fn slices_encode_and_decode() {
        let samples = [0, 100, -100, 5000, -5000];
        assert_eq!(decode_ulaw(&encode_ulaw(&samples)).len(), samples.len());
        assert_eq!(decode_alaw(&encode_alaw(&samples)).len(), samples.len());
        assert_eq!(encode_ulaw(&[0, 0]), vec![0xff, 0xff]);
        assert_eq!(encode_alaw(&[0, 0]), vec![0xd5, 0xd5]);
    }

    #[test]
    fn the_tone_is_a_sine_of_its_frequency() {
        let t = tone(1000.0, 8000, 0, 16);
        // 1 kHz at 8 kHz: 8 samples a period.
        assert_eq!(t[0], 0);
        assert_eq!(t[2], 8000);
        assert_eq!(t[4], 0);
        assert_eq!(t[6], -8000);
        assert_eq!(&t[8..16], &t[0..8]);
        // A tone continues where the last call stopped.
        assert_eq!(
            tone(440.0, 1000, 0, 320)[160..],
            tone(440.0, 1000, 160, 160)[..]
        );
        assert_eq!(tone(440.0, i16::MAX, u64::MAX - 3, 8).len(), 8);
    }
}
