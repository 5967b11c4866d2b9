// What the page checks itself, with WebCrypto only: a C2SP signed note (the checkpoint) against the pinned
// Ed25519 verifier key "name+hexkeyhash+base64(0x01||key)", and RFC 9162 inclusion proofs (SHA-256) to its root.
"use strict";
(function () {
  const enc = new TextEncoder();

  function b64bytes(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // The pinned key: its hash must match its name and key, as the CLI's parse_verifier_key insists.
  async function parseVerifierKey(text) {
    const t = text.trim(), a = t.indexOf("+"), b = t.indexOf("+", a + 1);
    if (a < 1 || b < 0) throw new Error("bad verifier key");  // base64 has "+" too: only the first two split
    const name = t.slice(0, a), hexhash = t.slice(a + 1, b), b64 = t.slice(b + 1);
    const raw = b64bytes(b64);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 verifier key");
    const keyHash = (await sha256(concat(enc.encode(name + "\n"), raw))).slice(0, 4);
    if (hex(keyHash) !== hexhash.toLowerCase()) throw new Error("verifier key hash does not match");
    const key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
    return { name, keyHash, key };
  }

  // The note's body (through its last newline) signed by the pinned key; returns origin, size and root.
  async function verifyCheckpoint(note, verifier) {
    const cut = note.indexOf("\n\n");
    if (cut < 0) throw new Error("checkpoint has no signature block");
    const body = note.slice(0, cut + 1);
    const lines = body.split("\n");
    if (lines.length < 4 || !/^[0-9]+$/.test(lines[1])) throw new Error("checkpoint body is malformed");
    const result = { origin: lines[0], size: Number(lines[1]), root: b64bytes(lines[2]), rootText: lines[2] };
    for (const line of note.slice(cut + 2).split("\n")) {
      if (!line.startsWith("\u2014 ")) continue;
      const sp = line.slice(2).split(" ");
      if (sp.length !== 2 || sp[0] !== verifier.name) continue;
      const blob = b64bytes(sp[1]);
      if (!equal(blob.slice(0, 4), verifier.keyHash)) continue;
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, verifier.key, blob.slice(4), enc.encode(body));
      if (!ok) throw new Error("checkpoint signature does not verify");
      return result;
    }
    throw new Error("checkpoint is not signed by the pinned key");
  }

  async function leafHash(leaf) { return sha256(concat(new Uint8Array([0]), leaf)); }

  // RFC 9162 §2.1.3.2: the proof from the leaf hash must end at the root, using every hash, no more.
  async function verifyInclusion(index, size, leaf, proof, root) {
    if (index >= size) return false;
    let fn = index, sn = size - 1;
    let r = await leafHash(leaf);
    const one = new Uint8Array([1]);
    for (const p of proof) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(concat(one, p, r));
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await sha256(concat(one, r, p));
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && equal(r, root);
  }

  window.CustosVerify = { b64bytes, hex, parseVerifierKey, verifyCheckpoint, verifyInclusion };
})();
