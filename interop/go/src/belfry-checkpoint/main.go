// belfry-checkpoint checks a belfry checkpoint with code nobody on the
// belfry project wrote: golang.org/x/mod/sumdb/note (Debian's
// golang-golang-x-mod-dev) parses the signed note and verifies every
// Ed25519 note signature (type 0x01) of the given verifier keys; Go's
// crypto/ed25519 verifies each witness cosignature (type 0x04) as C2SP
// tlog-cosignature v1 defines it. A changed note must fail.
//
// Usage: belfry-checkpoint CHECKPOINT VKEYS ORIGIN
// (VKEYS: one verifier key per line). Exit 0 when every key verified.
package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type cosigner struct {
	name string
	id   uint32
	pub  ed25519.PublicKey
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "belfry-checkpoint: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: belfry-checkpoint CHECKPOINT VKEYS ORIGIN")
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	keys, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	origin := os.Args[3]
	var verifiers []note.Verifier
	var cosigners []cosigner
	sc := bufio.NewScanner(bytes.NewReader(keys))
	for sc.Scan() {
		vkey := strings.TrimSpace(sc.Text())
		if vkey == "" {
			continue
		}
		parts := strings.SplitN(vkey, "+", 3)
		if len(parts) != 3 {
			fail("bad verifier key %q", vkey)
		}
		raw, err := base64.StdEncoding.DecodeString(parts[2])
		if err != nil || len(raw) != 33 {
			fail("bad verifier key %q", vkey)
		}
		switch raw[0] {
		case 0x01:
			v, err := note.NewVerifier(vkey)
			if err != nil {
				fail("x/mod/sumdb/note refuses %q: %v", vkey, err)
			}
			verifiers = append(verifiers, v)
		case 0x04:
			id, err := strconv.ParseUint(parts[1], 16, 32)
			if err != nil {
				fail("bad key id in %q", vkey)
			}
			h := sha256.Sum256(append(append([]byte(parts[0]+"\n"), 0x04), raw[1:]...))
			if binary.BigEndian.Uint32(h[:4]) != uint32(id) {
				fail("the key id of %q is not SHA-256(name, 0x04, key)[:4]", vkey)
			}
			cosigners = append(cosigners, cosigner{parts[0], uint32(id), ed25519.PublicKey(raw[1:])})
		default:
			fail("unknown key type %#x in %q", raw[0], vkey)
		}
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fail("note.Open: %v", err)
	}
	if len(n.Sigs) != len(verifiers) {
		fail("%d of %d Ed25519 note signatures verified", len(n.Sigs), len(verifiers))
	}
	// The text is a tlog-checkpoint: origin, decimal size, base64 root.
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) != 3 || lines[0] != origin {
		fail("the text is not a checkpoint of %s: %q", origin, n.Text)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		fail("bad tree size %q", lines[1])
	}
	if root, err := base64.StdEncoding.DecodeString(lines[2]); err != nil || len(root) != 32 {
		fail("bad root %q", lines[2])
	}
	for _, c := range cosigners {
		ok := false
		for _, s := range n.UnverifiedSigs {
			if s.Name != c.name || s.Hash != c.id {
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(s.Base64)
			if err != nil || len(raw) != 4+8+64 {
				fail("cosignature of %s: malformed", c.name)
			}
			t := binary.BigEndian.Uint64(raw[4:12])
			m := fmt.Sprintf("cosignature/v1\ntime %d\n%s", t, n.Text)
			if !ed25519.Verify(c.pub, []byte(m), raw[12:]) {
				fail("cosignature of %s does not verify", c.name)
			}
			ok = true
			fmt.Printf("cosignature of %s at %d verifies\n", c.name, t)
		}
		if !ok {
			fail("no cosignature of %s", c.name)
		}
	}
	// A changed note fails: the size one more.
	changed := bytes.Replace(msg, []byte("\n"+lines[1]+"\n"), []byte("\n"+strconv.FormatUint(size+1, 10)+"\n"), 1)
	if _, err := note.Open(changed, note.VerifierList(verifiers...)); err == nil {
		fail("a changed checkpoint still verifies")
	}
	fmt.Printf("checkpoint of %s, tree size %d: %d Ed25519 note signatures verify (x/mod/sumdb/note), %d cosignatures verify\n",
		origin, size, len(n.Sigs), len(cosigners))
}
