// The webhook's own CA and serving certificate, made with a real X.509 library
// (@peculiar/x509 over WebCrypto), and the rule for when to make new ones.
// @peculiar/x509 resolves its ASN.1 codecs through tsyringe, which needs this polyfill.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

/** PEM texts, as kept in the Secret. */
export interface CertBundle {
  /** The current CA certificate. */
  caCert: string;
  caKey: string;
  /** Every CA the API server should trust: the current one, then a previous one still valid. */
  caBundle: string;
  cert: string;
  key: string;
}

export interface CertPolicy {
  dnsNames: string[];
  certValidityMs: number;
  caValidityMs: number;
}

export type RotationReason = "missing" | "unreadable" | "ca-expiring" | "cert-expiring" | "names-changed";

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
    .toString("hex")
    .replace(/^[89a-f]/, "1");
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .trim()}\n-----END PRIVATE KEY-----\n`;
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
  return webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"]);
}

/** Backdated a little against clock skew between nodes, but never by much of a short life. */
function notBefore(now: Date, validityMs: number): Date {
  return new Date(now.getTime() - Math.min(60_000, validityMs / 10));
}

async function newCa(now: Date, validityMs: number): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=procview-webhook-ca-${now.getTime()}`,
    notBefore: notBefore(now, validityMs),
    notAfter: new Date(now.getTime() + validityMs),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}

async function newLeaf(ca: x509.X509Certificate, caKey: CryptoKey, policy: CertPolicy, now: Date) {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  // Never outlive the CA that signs it.
  const notAfter = Math.min(now.getTime() + policy.certValidityMs, ca.notAfter.getTime());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${policy.dnsNames[0]}`,
    issuer: ca.subject,
    notBefore: notBefore(now, policy.certValidityMs),
    notAfter: new Date(notAfter),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(policy.dnsNames.map((value) => ({ type: "dns" as const, value }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey) };
}

/** A whole new bundle: new CA, new serving certificate; `previous` stays trusted while it lasts. */
export async function issueBundle(policy: CertPolicy, now = new Date(), previous?: CertBundle): Promise<CertBundle> {
  const ca = await newCa(now, policy.caValidityMs);
  const leaf = await newLeaf(ca.cert, ca.keys.privateKey, policy, now);
  const caCert = ca.cert.toString("pem");
  let caBundle = caCert;
  if (previous) {
    try {
      if (new x509.X509Certificate(previous.caCert).notAfter > now) caBundle = `${caCert}\n${previous.caCert}`;
    } catch {
      // an unreadable previous CA is simply dropped
    }
  }
  return { caCert, caKey: await keyPem(ca.keys.privateKey), caBundle, ...leaf };
}

/** A new serving certificate from the bundle's CA (the caBundle does not change). */
export async function renewLeaf(bundle: CertBundle, policy: CertPolicy, now = new Date()): Promise<CertBundle> {
  const ca = new x509.X509Certificate(bundle.caCert);
  const leaf = await newLeaf(ca, await importKey(bundle.caKey), policy, now);
  return { ...bundle, ...leaf };
}

/** Less than a third of a certificate's life left: time for a new one. */
function expiring(cert: x509.X509Certificate, now: Date): boolean {
  const life = cert.notAfter.getTime() - cert.notBefore.getTime();
  return cert.notAfter.getTime() - now.getTime() < life / 3;
}

export function rotationNeeded(bundle: CertBundle | undefined, policy: CertPolicy, now = new Date()): RotationReason | undefined {
  if (!bundle) return "missing";
  let ca: x509.X509Certificate;
  let leaf: x509.X509Certificate;
  try {
    ca = new x509.X509Certificate(bundle.caCert);
    leaf = new x509.X509Certificate(bundle.cert);
  } catch {
    return "unreadable";
  }
  if (expiring(ca, now)) return "ca-expiring";
  if (expiring(leaf, now)) return "cert-expiring";
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  const names = new Set(san?.names.items.map((n) => n.value) ?? []);
  if (!policy.dnsNames.every((n) => names.has(n))) return "names-changed";
  return undefined;
}

export function notAfter(pem: string): Date {
  return new x509.X509Certificate(pem).notAfter;
}

/** The Service's DNS names, most specific last, as the API server may dial any of them. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, service, `${service}.${namespace}`, `${service}.${namespace}.svc.cluster.local`];
}
