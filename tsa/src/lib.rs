//! An RFC 3161 time-stamping authority that no single replica can be
//! (docs/rfc3161.md): a threshold RSA key after Shoup (`threshold`), the
//! authority's self-signed certificate (`cert`), the RFC 3161 structures
//! (`asn1`) and the token bytes — requests, `TSTInfo`, the signed attributes,
//! the CMS `SignedData` and the response (`token`). No I/O: the node's TSA
//! service (`belfry_node::tsa`) drives it.

pub mod asn1;
pub mod cert;
pub mod threshold;
pub mod token;

pub use threshold::{deal, sign_with, Dealt, KeyShare, PublicKey, SignatureShare, ThresholdError};
pub use token::{Authority, Failure, Prepared, Rejection, Request, TokenError, VerifiedToken};
