//! Signed tree heads as transparency-log checkpoints (docs/checkpoints.md):
//! C2SP `signed-note` and `tlog-checkpoint` text, the cluster's threshold
//! signature carried under a belfry key id, per-replica Ed25519 note
//! signatures that stock witnesses and monitors verify, and C2SP
//! `tlog-cosignature` (v1, Ed25519) witness cosignatures.
//!
//! A checkpoint's text is the three lines of `tlog-checkpoint` and nothing
//! else:
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root, base64>
//! ```
//!
//! Its signature lines (`— <key name> base64(key id || signature)`):
//!
//! - the cluster's: key name the origin, key id `SHA-256(origin || 0x0A ||
//!   0xff || "belfry-sth-v1" || group public key[48])[:4]`, signature
//!   `time u64 || BLS signature[96]` — the head's threshold signature on
//!   `"belfry-sth-v1" || cluster_id || tree_size || root || time` exactly as
//!   a receipt carries it, so the note adds no signing work and anyone with
//!   the trust anchor and the cluster's parameters checks it;
//! - each replica's: key name the origin, signature type `0x01` (Ed25519 on
//!   the text, C2SP `signed-note`), one key per replica;
//! - each witness's: type `0x04` (C2SP `tlog-cosignature` v1), `timestamp
//!   u64 || Ed25519 signature` on `"cosignature/v1\ntime <t>\n" || text`.

use crate::head::{SignedTreeHead, TreeHead};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use belfry_clock::Micros;
use belfry_coin::{sha256, ClusterId, GroupPublicKey, GroupSignature};
use serde::{Deserialize, Serialize};

/// The longest note read (text and signatures).
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
/// The most signature lines a note may carry (C2SP asks for at least 16).
pub const MAX_NOTE_SIGNATURES: usize = 100;
/// The longest key name or origin.
pub const MAX_NAME_BYTES: usize = 255;
/// The most witnesses a cluster lists.
pub const MAX_WITNESSES: usize = 32;

/// Signature type byte of an Ed25519 note signature (C2SP `signed-note`).
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type byte of an Ed25519 witness cosignature (C2SP
/// `tlog-cosignature`, v1).
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;
/// The cluster's key id type: `0xff` and a longer identifier (C2SP
/// `signed-note` reserves `0xff` for types without an assigned byte).
pub const TYPE_BELFRY_STH: &[u8] = b"\xffbelfry-sth-v1";

/// Why a note, a key or a signature is refused. Each names what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a signed note (the reason says where).
    #[error("malformed note: {0}")]
    Malformed(String),
    /// The text is not a checkpoint of this cluster.
    #[error("not a checkpoint of this cluster: {0}")]
    Checkpoint(String),
    /// A verifier key (`name+id+base64`) that cannot be used.
    #[error("bad verifier key {key:?}: {why}")]
    Key {
        /// The key as given.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// No line carries the cluster's signature.
    #[error("the note carries no signature of the cluster's key")]
    Unsigned,
    /// A signature from a known key does not verify (the note must be
    /// rejected whole).
    #[error("signature of {0} does not verify")]
    BadSignature(String),
}

fn malformed(why: impl Into<String>) -> NoteError {
    NoteError::Malformed(why.into())
}

/// A key name or origin as C2SP requires: non-empty, no Unicode spaces, no
/// `+`, no control characters, at most [`MAX_NAME_BYTES`].
pub fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(malformed(format!(
            "key name must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(malformed(format!(
            "key name {name:?} contains a space, a '+' or a control character"
        )));
    }
    Ok(())
}

/// The default origin of a cluster: `belfry/<cluster id, hex>`.
pub fn default_origin(cluster_id: ClusterId) -> String {
    format!("belfry/{}", hex::encode(cluster_id.0))
}

/// `SHA-256(name || 0x0A || type || key)[:4]`.
pub fn key_id(name: &str, sig_type: &[u8], key: &[u8]) -> [u8; 4] {
    let h = sha256(&[name.as_bytes(), b"\n", sig_type, key]);
    [h[0], h[1], h[2], h[3]]
}

/// One signature line: `— <name> base64(key id || signature)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub key_id: [u8; 4],
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, newline included.
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, B64.encode(raw))
    }

    /// Parses one line (without its newline).
    pub fn parse_line(line: &str) -> Result<NoteSignature, NoteError> {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| malformed("a signature line must start with an em dash and a space"))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("a signature line is '— <name> <base64>'"))?;
        check_name(name)?;
        let raw = B64
            .decode(sig)
            .map_err(|e| malformed(format!("signature of {name}: not base64: {e}")))?;
        if raw.len() < 5 {
            return Err(malformed(format!("signature of {name}: too short")));
        }
        Ok(NoteSignature {
            name: name.to_string(),
            key_id: [raw[0], raw[1], raw[2], raw[3]],
            signature: raw[4..].to_vec(),
        })
    }
}

/// A signed note: its text (ending in a newline) and its signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, final newline included.
    pub text: String,
    /// The signatures, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a note: valid UTF-8 of at most [`MAX_NOTE_BYTES`], no control
    /// characters but newlines, the text separated from one to
    /// [`MAX_NOTE_SIGNATURES`] signature lines by its last blank line.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(malformed(format!(
                "{} bytes, more than {MAX_NOTE_BYTES}",
                bytes.len()
            )));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8"))?;
        if s.chars().any(|c| c != '\n' && (c as u32) < 0x20) {
            return Err(malformed("a control character other than newline"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or_else(|| malformed("the last signature line must end in a newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(malformed(format!(
                    "more than {MAX_NOTE_SIGNATURES} signatures"
                )));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn encode(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }

    /// Adds a signature unless one with the same name and key id is there.
    pub fn add(&mut self, sig: NoteSignature) {
        if !self
            .signatures
            .iter()
            .any(|s| s.name == sig.name && s.key_id == sig.key_id)
        {
            self.signatures.push(sig);
        }
    }
}

/// The three lines of a `tlog-checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The log's origin (its identity).
    pub origin: String,
    /// The tree size.
    pub tree_size: u64,
    /// The RFC 6962 root.
    pub root: [u8; 32],
}

impl Checkpoint {
    /// The note text.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            B64.encode(self.root)
        )
    }

    /// Reads a checkpoint's text: exactly the three lines (belfry writes no
    /// extension lines and accepts none), the size in decimal without
    /// leading zeros, the root 32 bytes of base64.
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |why: String| NoteError::Checkpoint(why);
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text must end in a newline".into()))?
            .split('\n')
            .collect();
        let [origin, size, root] = lines[..] else {
            return Err(bad(format!(
                "{} lines; a belfry checkpoint has exactly origin, size and root",
                lines.len()
            )));
        };
        check_name(origin)?;
        let tree_size: u64 = size
            .parse()
            .ok()
            .filter(|v: &u64| v.to_string() == size)
            .ok_or_else(|| bad(format!("tree size {size:?} is not a decimal number")))?;
        let root: [u8; 32] = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad(format!("root {root:?} is not 32 bytes of base64")))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            tree_size,
            root,
        })
    }
}

/// What a checkpoint is checked against: the cluster's identity.
#[derive(Clone, Copy, Debug)]
pub struct ClusterKey<'a> {
    /// The origin the cluster's checkpoints name.
    pub origin: &'a str,
    /// The cluster id (from its parameters).
    pub cluster_id: ClusterId,
    /// The group public key (the trust anchor).
    pub group_key: &'a GroupPublicKey,
}

impl ClusterKey<'_> {
    /// The key id of the cluster's signature line.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(self.origin, TYPE_BELFRY_STH, &self.group_key.to_bytes())
    }

    /// The checkpoint of a signed head, signed by the cluster.
    pub fn note(&self, sth: &SignedTreeHead) -> Note {
        let cp = Checkpoint {
            origin: self.origin.to_string(),
            tree_size: sth.head.tree_size,
            root: sth.head.root,
        };
        let mut signature = Vec::with_capacity(8 + 96);
        signature.extend_from_slice(&sth.head.time.0.to_be_bytes());
        signature.extend_from_slice(&sth.signature.0);
        Note {
            text: cp.text(),
            signatures: vec![NoteSignature {
                name: self.origin.to_string(),
                key_id: self.key_id(),
                signature,
            }],
        }
    }

    /// Opens a checkpoint: the text is this cluster's checkpoint and the
    /// cluster's line verifies. Returns the signed head it is.
    pub fn open(&self, note: &Note) -> Result<SignedTreeHead, NoteError> {
        let cp = Checkpoint::parse(&note.text)?;
        if cp.origin != self.origin {
            return Err(NoteError::Checkpoint(format!(
                "origin {:?}, this cluster's is {:?}",
                cp.origin, self.origin
            )));
        }
        let id = self.key_id();
        let line = note
            .signatures
            .iter()
            .find(|s| s.name == self.origin && s.key_id == id)
            .ok_or(NoteError::Unsigned)?;
        let bad = || NoteError::BadSignature(format!("the cluster ({})", self.origin));
        if line.signature.len() != 8 + 96 {
            return Err(bad());
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&line.signature[..8]);
        let mut sig = [0u8; 96];
        sig.copy_from_slice(&line.signature[8..]);
        let sth = SignedTreeHead {
            head: TreeHead {
                tree_size: cp.tree_size,
                root: cp.root,
                time: Micros(u64::from_be_bytes(time)),
            },
            signature: GroupSignature(sig),
        };
        if !sth.verify(self.cluster_id, self.group_key) {
            return Err(bad());
        }
        Ok(sth)
    }
}

/// A witness's cosignature as a replica keeps it: the checkpoint it is on
/// and the signature line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessCosignature {
    /// The witness's verifier key, as the cluster lists it.
    pub witness: String,
    /// The cosigned tree size.
    pub tree_size: u64,
    /// The cosigned root.
    pub root: [u8; 32],
    /// When the witness cosigned (seconds since the epoch).
    pub timestamp: u64,
    /// The signature line.
    pub signature: NoteSignature,
}

/// The kinds of verifier key belfry reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifierKind {
    /// `0x01`: Ed25519 on the note text (a replica's key).
    Ed25519,
    /// `0x04`: a `tlog-cosignature` v1 witness key.
    Cosignature,
}

/// A verifier key, `<name>+<hex key id>+<base64(type || public key)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name.
    pub name: String,
    /// What it verifies.
    pub kind: VerifierKind,
    /// The Ed25519 public key.
    pub public: [u8; 32],
}

impl VerifierKey {
    /// Parses a verifier key; the key id must be the one C2SP computes.
    pub fn parse(s: &str) -> Result<VerifierKey, NoteError> {
        let bad = |why: &str| NoteError::Key {
            key: s.to_string(),
            why: why.to_string(),
        };
        // The name holds no '+' and the id is hex: the key's base64 may.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("a verifier key is <name>+<key id hex>+<base64 key>"));
        };
        check_name(name).map_err(|_| bad("the name is not a valid key name"))?;
        let raw = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let (kind, public) = match raw.split_first() {
            Some((&TYPE_ED25519, pk)) => (VerifierKind::Ed25519, pk),
            Some((&TYPE_COSIGNATURE_V1, pk)) => (VerifierKind::Cosignature, pk),
            _ => {
                return Err(bad(
                    "only Ed25519 (0x01) and cosignature/v1 (0x04) keys are supported",
                ))
            }
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
        let k = VerifierKey {
            name: name.to_string(),
            kind,
            public,
        };
        if id.len() != 8 || hex::encode(k.key_id()) != id.to_ascii_lowercase() {
            return Err(bad("the key id is not SHA-256(name, type, key)[:4]"));
        }
        Ok(k)
    }

    fn type_byte(&self) -> u8 {
        match self.kind {
            VerifierKind::Ed25519 => TYPE_ED25519,
            VerifierKind::Cosignature => TYPE_COSIGNATURE_V1,
        }
    }

    /// Its key id.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, &[self.type_byte()], &self.public)
    }

    /// Whether `sig` claims to be from this key.
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id()
    }

    /// Checks `sig` (from this key) on `text`: `Ok(None)` for a note
    /// signature, `Ok(Some(timestamp))` for a cosignature.
    pub fn verify(&self, text: &str, sig: &NoteSignature) -> Result<Option<u64>, NoteError> {
        let bad = || NoteError::BadSignature(self.name.clone());
        if !self.matches(sig) {
            return Err(bad());
        }
        let pk = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, self.public);
        match self.kind {
            VerifierKind::Ed25519 => pk
                .verify(text.as_bytes(), &sig.signature)
                .map(|()| None)
                .map_err(|_| bad()),
            VerifierKind::Cosignature => {
                if sig.signature.len() != 8 + 64 {
                    return Err(bad());
                }
                let mut t = [0u8; 8];
                t.copy_from_slice(&sig.signature[..8]);
                let timestamp = u64::from_be_bytes(t);
                if timestamp > i64::MAX as u64 {
                    return Err(bad());
                }
                pk.verify(
                    cosigned_message(text, timestamp).as_bytes(),
                    &sig.signature[8..],
                )
                .map(|()| Some(timestamp))
                .map_err(|_| bad())
            }
        }
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![self.type_byte()];
        raw.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            B64.encode(raw)
        )
    }
}

/// What a v1 cosignature signs: `cosignature/v1\ntime <t>\n` and the text.
pub fn cosigned_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// An Ed25519 signing key for notes: a replica's (type `0x01`) or a
/// witness's (type `0x04`, cosignatures).
pub struct NoteSigner {
    verifier: VerifierKey,
    seed: zeroize::Zeroizing<[u8; 32]>,
    pair: ring::signature::Ed25519KeyPair,
}

impl Clone for NoteSigner {
    fn clone(&self) -> Self {
        // ring's pair is not Clone: derive it again from the seed.
        NoteSigner::from_seed(&self.verifier.name, self.verifier.kind, &self.seed)
            .unwrap_or_else(|_| unreachable!("the seed made this signer"))
    }
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("verifier", &self.verifier.to_string())
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// The key of `name` from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, kind: VerifierKind, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| {
            NoteError::Key {
                key: name.to_string(),
                why: "not an Ed25519 seed".into(),
            }
        })?;
        let mut public = [0u8; 32];
        public.copy_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
        Ok(NoteSigner {
            verifier: VerifierKey {
                name: name.to_string(),
                kind,
                public,
            },
            seed: zeroize::Zeroizing::new(*seed),
            pair,
        })
    }

    /// The same key under another name (a replica's key follows the
    /// cluster's origin).
    pub fn renamed(&self, name: &str) -> Result<Self, NoteError> {
        NoteSigner::from_seed(name, self.verifier.kind, &self.seed)
    }

    /// Its verifier key.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Signs `text` as a note signature (type `0x01`).
    pub fn sign(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.verifier.name.clone(),
            key_id: self.verifier.key_id(),
            signature: self.pair.sign(text.as_bytes()).as_ref().to_vec(),
        }
    }

    /// Cosigns `text` at `timestamp` (seconds since the epoch; type `0x04`).
    pub fn cosign(&self, text: &str, timestamp: u64) -> NoteSignature {
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(
            self.pair
                .sign(cosigned_message(text, timestamp).as_bytes())
                .as_ref(),
        );
        NoteSignature {
            name: self.verifier.name.clone(),
            key_id: self.verifier.key_id(),
            signature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_coin::{Policy, SignedMessage};

    fn signer(name: &str, kind: VerifierKind, b: u8) -> NoteSigner {
        NoteSigner::from_seed(name, kind, &[b; 32]).unwrap()
    }

    #[test]
    fn a_note_round_trips_and_ed25519_lines_verify() {
        let cp = Checkpoint {
            origin: "example.org/log".into(),
            tree_size: 20852163,
            root: [7; 32],
        };
        let s = signer("example.org/log", VerifierKind::Ed25519, 1);
        let note = Note {
            text: cp.text(),
            signatures: vec![s.sign(&cp.text())],
        };
        let text = note.encode();
        let back = Note::parse(text.as_bytes()).unwrap();
        assert_eq!(back, note);
        assert_eq!(Checkpoint::parse(&back.text).unwrap(), cp);
        let vkey = VerifierKey::parse(&s.verifier().to_string()).unwrap();
        assert_eq!(vkey, *s.verifier());
        assert_eq!(vkey.verify(&back.text, &back.signatures[0]), Ok(None));
        let other = cp.text().replace("20852163", "20852164");
        assert!(vkey.verify(&other, &back.signatures[0]).is_err());
    }

    #[test]
    fn cosignatures_carry_their_time_and_sign_it() {
        let text = "example.org/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let w = signer("witness.example/w1", VerifierKind::Cosignature, 9);
        let mut sig = w.cosign(text, 1679315147);
        assert_eq!(w.verifier().verify(text, &sig), Ok(Some(1679315147)));
        sig.signature[7] ^= 1;
        assert!(w.verifier().verify(text, &sig).is_err());
        // The same key as a note key has another id: never confused.
        let as_note = signer("witness.example/w1", VerifierKind::Ed25519, 9);
        assert!(!as_note.verifier().matches(&w.cosign(text, 1)));
    }

    #[test]
    fn the_cluster_line_is_the_heads_threshold_signature() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let (public, secrets) = belfry_coin::deal(4, 1, &mut rng).unwrap();
        let public = std::sync::Arc::new(public);
        let params = belfry_coin::ClusterParams::of_keys(&public, Policy::Lamport, Micros(1));
        let key = public.group_key();
        let head = TreeHead {
            tree_size: 3,
            root: [5; 32],
            time: Micros(99),
        };
        let signature = belfry_coin::threshold_sign(
            &public,
            &secrets,
            &head.message(params.cluster_id()).signing_bytes(),
        )
        .unwrap();
        let sth = SignedTreeHead { head, signature };
        let origin = default_origin(params.cluster_id());
        let ck = ClusterKey {
            origin: &origin,
            cluster_id: params.cluster_id(),
            group_key: &key,
        };
        let note = ck.note(&sth);
        let parsed = Note::parse(note.encode().as_bytes()).unwrap();
        assert_eq!(ck.open(&parsed), Ok(sth));
        let mut changed = parsed.clone();
        changed.text = changed.text.replace("\n3\n", "\n4\n");
        assert!(matches!(ck.open(&changed), Err(NoteError::BadSignature(_))));
        let mut unsigned = parsed.clone();
        unsigned.signatures.clear();
        assert_eq!(ck.open(&unsigned), Err(NoteError::Unsigned));
    }

    #[test]
    fn malformed_notes_are_refused_with_a_reason() {
        for bad in [
            &b""[..],
            b"a\n1\nroot\n",
            b"a\n1\nroot\n\n",
            b"a\n1\nroot\n\n- a AAAAAAA=\n",
            b"a\n1\nroot\n\n\xe2\x80\x94 a AAAA\n",
            b"a\n1\nroot\n\n\xe2\x80\x94 a AAAAAAA=",
            b"a\x01\n1\nroot\n\n\xe2\x80\x94 a AAAAAAA=\n",
            b"\xff\n\n",
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Note::parse(&vec![b'a'; MAX_NOTE_BYTES + 1]).is_err());
        for text in [
            "o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "o\n1\nAAAA\n",
            "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n",
            "o p\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        ] {
            assert!(Checkpoint::parse(text).is_err(), "{text:?}");
        }
        // A key whose base64 holds a '+' parses (the name never does).
        for b in 0..=255u8 {
            let k = signer("n", VerifierKind::Ed25519, b);
            assert_eq!(
                VerifierKey::parse(&k.verifier().to_string()).as_ref(),
                Ok(k.verifier())
            );
        }
        for key in [
            "name+00000000+AQ==",
            "name+zz+AQ==",
            "a+b",
            "na me+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(VerifierKey::parse(key).is_err(), "{key}");
        }
    }
}
