//! An incrementally maintained commitment to a set of 32-byte keys with
//! 32-byte values: a binary Patricia trie (crit-bit tree) whose nodes cache
//! their hashes. The trie's shape depends only on the key set, never on the
//! order of updates, so every replica holding the same pending digests gets
//! the same root; an insert, update or removal rehashes only the path to the
//! root — at most 256 branches, however adversarial the keys.
//!
//! Hashes (all SHA3-256):
//! `leaf = H("belfry-trie-leaf-v1" || key[32] || value[32])`,
//! `branch = H("belfry-trie-node-v1" || bit u16 || left[32] || right[32])` where
//! `bit` is the first bit (from the most significant of byte 0) in which the
//! two subtrees' keys differ and `left` holds the keys with that bit clear,
//! and the empty trie's root is `H("belfry-trie-empty-v1")`.

use belfry_coin::sha3;

type Key = [u8; 32];

#[derive(Clone, Debug)]
enum Node {
    Leaf {
        key: Key,
        hash: [u8; 32],
    },
    Branch {
        bit: u16,
        /// Some key below: the shared prefix is its first `bit` bits.
        some_key: Key,
        children: Box<[Node; 2]>,
        hash: [u8; 32],
    },
}

fn bit_of(key: &Key, bit: u16) -> usize {
    usize::from((key[usize::from(bit / 8)] >> (7 - bit % 8)) & 1)
}

fn first_difference(a: &Key, b: &Key) -> Option<u16> {
    let i = (0..32).find(|i| a[*i] != b[*i])?;
    Some(i as u16 * 8 + (a[i] ^ b[i]).leading_zeros() as u16)
}

fn leaf(key: Key, value: [u8; 32]) -> Node {
    Node::Leaf {
        key,
        hash: sha3(&[b"belfry-trie-leaf-v1", &key, &value]),
    }
}

fn branch(bit: u16, children: [Node; 2]) -> Node {
    let hash = sha3(&[
        b"belfry-trie-node-v1",
        &bit.to_be_bytes(),
        children[0].hash(),
        children[1].hash(),
    ]);
    Node::Branch {
        bit,
        some_key: *children[0].some_key(),
        children: Box::new(children),
        hash,
    }
}

impl Node {
    fn hash(&self) -> &[u8; 32] {
        match self {
            Node::Leaf { hash, .. } | Node::Branch { hash, .. } => hash,
        }
    }

    fn some_key(&self) -> &Key {
        match self {
            Node::Leaf { key, .. } => key,
            Node::Branch { some_key, .. } => some_key,
        }
    }

    fn insert(self, key: Key, value: [u8; 32]) -> Node {
        let d = first_difference(self.some_key(), &key);
        match self {
            Node::Leaf { .. } if d.is_none() => leaf(key, value), // a new value
            Node::Branch { bit, children, .. } if d.is_none_or(|d| d >= bit) => {
                // The key shares this subtree's prefix: go down.
                let [l, r] = *children;
                let pair = if bit_of(&key, bit) == 0 {
                    [l.insert(key, value), r]
                } else {
                    [l, r.insert(key, value)]
                };
                branch(bit, pair)
            }
            other => {
                // The key leaves the subtree's prefix at bit d: split here.
                let d = d.unwrap_or(255);
                let new = leaf(key, value);
                if bit_of(&key, d) == 0 {
                    branch(d, [new, other])
                } else {
                    branch(d, [other, new])
                }
            }
        }
    }

    /// The node without `key` (`None` if it was the only key).
    fn remove(self, key: &Key) -> Option<Node> {
        match self {
            Node::Leaf { key: k, .. } if k == *key => None,
            leaf @ Node::Leaf { .. } => Some(leaf),
            Node::Branch { bit, children, .. } => {
                let [l, r] = *children;
                if bit_of(key, bit) == 0 {
                    match l.remove(key) {
                        Some(l) => Some(branch(bit, [l, r])),
                        None => Some(r),
                    }
                } else {
                    match r.remove(key) {
                        Some(r) => Some(branch(bit, [l, r])),
                        None => Some(l),
                    }
                }
            }
        }
    }

    fn contains(&self, key: &Key) -> bool {
        match self {
            Node::Leaf { key: k, .. } => k == key,
            Node::Branch { bit, children, .. } => children[bit_of(key, *bit)].contains(key),
        }
    }
}

/// The commitment (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct HashTrie {
    root: Option<Node>,
    len: usize,
}

impl HashTrie {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s value (inserting it if new). O(depth) hashes.
    pub fn insert(&mut self, key: Key, value: [u8; 32]) {
        if !self.contains(&key) {
            self.len += 1;
        }
        self.root = Some(match self.root.take() {
            None => leaf(key, value),
            Some(n) => n.insert(key, value),
        });
    }

    /// Removes `key` if present. O(depth) hashes.
    pub fn remove(&mut self, key: &Key) {
        if self.contains(key) {
            self.len -= 1;
            self.root = self.root.take().and_then(|n| n.remove(key));
        }
    }

    /// Whether `key` is in the trie.
    pub fn contains(&self, key: &Key) -> bool {
        self.root.as_ref().is_some_and(|n| n.contains(key))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root hash.
    pub fn root(&self) -> [u8; 32] {
        match &self.root {
            None => sha3(&[b"belfry-trie-empty-v1"]),
            Some(n) => *n.hash(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The trie's root recomputed from scratch, by the definition.
    fn reference(set: &BTreeMap<Key, [u8; 32]>) -> [u8; 32] {
        fn build(items: &[(Key, [u8; 32])]) -> [u8; 32] {
            if let [(k, v)] = items {
                return sha3(&[b"belfry-trie-leaf-v1", k, v]);
            }
            let first = items[0].0;
            let last = items[items.len() - 1].0;
            let Some(bit) = first_difference(&first, &last) else {
                unreachable!("distinct keys")
            };
            let split = items.partition_point(|(k, _)| bit_of(k, bit) == 0);
            sha3(&[
                b"belfry-trie-node-v1",
                &bit.to_be_bytes(),
                &build(&items[..split]),
                &build(&items[split..]),
            ])
        }
        let items: Vec<(Key, [u8; 32])> = set.iter().map(|(k, v)| (*k, *v)).collect();
        if items.is_empty() {
            sha3(&[b"belfry-trie-empty-v1"])
        } else {
            build(&items)
        }
    }

    fn key(seed: u8, shared_prefix: usize) -> Key {
        let mut k = [0xa5u8; 32];
        for (i, b) in k.iter_mut().enumerate().skip(shared_prefix.min(32)) {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8);
        }
        k
    }

    proptest! {
        #[test]
        fn incremental_root_matches_a_rebuild_in_any_update_order(
            ops in proptest::collection::vec((any::<u8>(), 0usize..33, any::<u8>(), any::<bool>()), 0..120)
        ) {
            let mut trie = HashTrie::new();
            let mut set = BTreeMap::new();
            for (seed, prefix, value, remove) in ops {
                let k = key(seed, prefix);
                if remove {
                    trie.remove(&k);
                    set.remove(&k);
                } else {
                    trie.insert(k, [value; 32]);
                    set.insert(k, [value; 32]);
                }
                prop_assert_eq!(trie.len(), set.len());
            }
            prop_assert_eq!(trie.root(), reference(&set));
            // Another insertion order of the same final set: the same root.
            let mut again = HashTrie::new();
            for (k, v) in set.iter().rev() {
                again.insert(*k, *v);
            }
            prop_assert_eq!(again.root(), trie.root());
        }
    }

    #[test]
    fn a_changed_value_or_key_changes_the_root() {
        let mut t = HashTrie::new();
        let empty = t.root();
        t.insert(key(1, 0), [1; 32]);
        t.insert(key(2, 31), [2; 32]);
        let r = t.root();
        assert_ne!(r, empty);
        t.insert(key(2, 31), [3; 32]);
        assert_ne!(t.root(), r);
        t.insert(key(2, 31), [2; 32]);
        assert_eq!(t.root(), r);
        t.remove(&key(1, 0));
        t.remove(&key(2, 31));
        assert_eq!(t.root(), empty);
        assert!(t.is_empty());
    }
}
