//! The crypto seam: the few NaCl primitives CURVE needs, over one crate (`dryoc`).
//!
//! Everything cryptographic in this crate goes through these functions, so replacing the
//! crate touches this file only. `dryoc` was chosen over `crypto_box` by measurement (a small
//! frame sealed and opened in 0.85 us against 3.5 us, a Diffie-Hellman in 44 us against
//! 119 us; BENCHMARKS.md "CURVE").

use dryoc::classic::{crypto_box, crypto_core};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes of a key (public, secret or precomputed).
pub(crate) const KEY_LEN: usize = 32;
/// Bytes of the Poly1305 tag in front of a box's ciphertext.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes of a box nonce.
pub(crate) const NONCE_LEN: usize = 24;

/// A precomputed box key (`crypto_box_beforenm`), or a `secretbox` key: both are used with
/// the same XSalsa20-Poly1305 construction. Zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct BoxKey([u8; KEY_LEN]);

impl std::fmt::Debug for BoxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxKey(..)")
    }
}

impl BoxKey {
    /// The shared key of `public` and `secret` (X25519 then HSalsa20). `None` for a public
    /// key of low order, whose shared secret would be all zeros.
    pub(crate) fn precompute(public: &[u8; KEY_LEN], secret: &[u8; KEY_LEN]) -> Option<Self> {
        crypto_box::crypto_box_beforenm(public, secret)
            .ok()
            .map(Self)
    }

    /// A fresh random key (the cookie key).
    pub(crate) fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        random_bytes(&mut k);
        Self(k)
    }

    /// Encrypts `data` in place and returns the tag.
    pub(crate) fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], data: &mut [u8]) -> [u8; TAG_LEN] {
        let mut tag = [0u8; TAG_LEN];
        crypto_box::crypto_box_detached_afternm_inplace(data, &mut tag, nonce, &self.0);
        tag
    }

    /// Checks the tag and decrypts `data` in place; `false` (and `data` unspecified) if the
    /// tag does not match.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        crypto_box::crypto_box_open_detached_afternm_inplace(data, tag, nonce, &self.0).is_ok()
    }

    /// `tag || ciphertext` of `plain` (the layout of every box on the CURVE wire).
    pub(crate) fn seal(&self, nonce: &[u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; TAG_LEN + plain.len()];
        out[TAG_LEN..].copy_from_slice(plain);
        let tag = self.seal_in_place(nonce, &mut out[TAG_LEN..]);
        out[..TAG_LEN].copy_from_slice(&tag);
        out
    }

    /// Opens `tag || ciphertext`; `None` if it is too short or the tag does not match.
    pub(crate) fn open(&self, nonce: &[u8; NONCE_LEN], boxed: &[u8]) -> Option<Vec<u8>> {
        if boxed.len() < TAG_LEN {
            return None;
        }
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&boxed[..TAG_LEN]);
        let mut plain = boxed[TAG_LEN..].to_vec();
        self.open_in_place(nonce, &mut plain, &tag).then_some(plain)
    }
}

/// A new X25519 keypair `(public, secret)`.
pub(crate) fn keypair() -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
    crypto_box::crypto_box_keypair()
}

/// The public key of a secret key.
pub(crate) fn public_of(secret: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut public = [0u8; KEY_LEN];
    crypto_core::crypto_scalarmult_base(&mut public, secret);
    public
}

/// Fills `out` from the operating system's random source.
pub(crate) fn random_bytes(out: &mut [u8]) {
    dryoc::rng::copy_randombytes(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_sealed_with_one_side_opens_with_the_other() {
        let (apk, ask) = keypair();
        let (bpk, bsk) = keypair();
        assert_eq!(public_of(&ask), apk);
        let ab = BoxKey::precompute(&bpk, &ask).expect("key");
        let ba = BoxKey::precompute(&apk, &bsk).expect("key");
        let nonce = [7u8; NONCE_LEN];
        let boxed = ab.seal(&nonce, b"hello");
        assert_eq!(boxed.len(), TAG_LEN + 5);
        assert_eq!(ba.open(&nonce, &boxed).as_deref(), Some(&b"hello"[..]));
        let mut bad = boxed.clone();
        bad[TAG_LEN] ^= 1;
        assert_eq!(ba.open(&nonce, &bad), None, "a flipped bit fails the tag");
        assert_eq!(
            ba.open(&[8u8; NONCE_LEN], &boxed),
            None,
            "another nonce fails"
        );
        assert_eq!(ba.open(&nonce, &boxed[..10]), None, "shorter than a tag");
    }

    #[test]
    fn a_low_order_public_key_is_refused() {
        let (_, sk) = keypair();
        assert!(BoxKey::precompute(&[0u8; KEY_LEN], &sk).is_none());
    }

    /// NaCl's published test vector (Bernstein, "Cryptography in NaCl", box test): Alice's
    /// secret and Bob's public give the shared key `1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389`.
    #[test]
    fn the_nacl_beforenm_vector() {
        let alice_sk = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let bob_pk = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let k = BoxKey::precompute(&bob_pk, &alice_sk).expect("key");
        assert_eq!(
            k.0,
            hex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
        );
        assert_eq!(
            public_of(&alice_sk),
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    fn hex(s: &str) -> [u8; KEY_LEN] {
        let mut out = [0u8; KEY_LEN];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }
}
