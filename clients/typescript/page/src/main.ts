// The party's page: attest the enclave, check the party's constraint, then
// encrypt the party's input in the browser and show the enclave's replies.
// All cryptography happens here; the host sees only ciphertext.
import {
  ClientError,
  EnclaveClient,
  EnclaveConstraint,
  type EnclaveReply,
  HttpRelay,
  InfoError,
  LocalStorageStorage,
  type VerifiedEnclaveInfo,
  decodeInfo,
  equal,
  formatCheckpoint,
  lossyUtf8,
  toHex,
  utf8,
  verifyInfo,
} from "../../src/index.js";

const SAMPLES = ["stats", "auction", "psi", "reverse"] as const;
type Sample = (typeof SAMPLES)[number];

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

const relay = new HttpRelay("");
let client: EnclaveClient | undefined;
let storageKey: string | undefined;
let satisfied = false;
let busy = false;
let sample: Sample = "stats";

const now = (): bigint => BigInt(Math.floor(Date.now() / 1000));

function lock(): void {
  for (const button of document.querySelectorAll<HTMLButtonElement>("[data-send]")) {
    button.disabled = !satisfied || busy;
  }
  el("locked").hidden = satisfied;
}

function showError(message: string | undefined): void {
  const box = el("error");
  box.hidden = message === undefined;
  box.textContent = message ?? "";
}

function verdict(kind: "ok" | "refused" | undefined, message = ""): void {
  const box = el("verdict");
  box.hidden = kind === undefined;
  box.className = `verdict ${kind ?? ""}`;
  box.textContent = message;
}

function row(name: string, value: string, result?: "pass" | "fail"): void {
  const tr = document.createElement("tr");
  const th = document.createElement("td");
  th.textContent = name;
  const td = document.createElement("td");
  td.textContent = value;
  if (result) td.className = result;
  tr.append(th, td);
  el("checked").querySelector("tbody")!.append(tr);
  el("checked").hidden = false;
}

function showIdentity(v: VerifiedEnclaveInfo): void {
  const id = v.identity;
  row("Mode", v.mode);
  row("Security", `${id.security}: ${id.securityReason}`);
  row("Code hash", toHex(id.codeHash));
  row("Signer", id.signer ? toHex(id.signer) : "(none)");
  row("Product id", id.productId === undefined ? "(none)" : String(id.productId));
  row("Revocation level", id.revocationLevel === undefined ? "(none)" : String(id.revocationLevel));
  if (id.timestampUnix !== undefined) {
    row("Evidence made", new Date(Number(id.timestampUnix) * 1000).toISOString());
  }
  if (id.simulatedAttestationKey) row("Simulated attestation key", toHex(id.simulatedAttestationKey));
  row("Encryption key", toHex(v.encryptionKey));
  row("Run checkpoint", formatCheckpoint(v.run));
}

function showInsecure(v: VerifiedEnclaveInfo | undefined): void {
  const box = el("insecure");
  if (!v || v.identity.security !== "INSECURE") {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.textContent =
    `INSECURE (${v.mode}): ${v.identity.securityReason}. Whoever runs this host could read what you send. ` +
    "Use it for a demonstration only.";
}

/** Fetches and verifies the attestation, shows every check, and opens the client if the constraint holds. */
async function attest(): Promise<void> {
  satisfied = false;
  client = undefined;
  lock();
  showError(undefined);
  el("checked").querySelector("tbody")!.replaceChildren();
  el("checked").hidden = true;
  showInsecure(undefined);
  verdict(undefined);
  const text = el<HTMLInputElement>("constraint").value.trim();
  let constraint: EnclaveConstraint;
  try {
    constraint = EnclaveConstraint.parse(text);
  } catch (e) {
    verdict("refused", `Nothing will be sent: the constraint is invalid: ${(e as Error).message}`);
    return;
  }
  localStorage.setItem("conclave-page:constraint", text);
  let verified: VerifiedEnclaveInfo;
  try {
    const info = decodeInfo(await relay.attestation());
    verified = verifyInfo(info, now());
  } catch (e) {
    const message = (e as Error).message;
    row("Attestation", message, "fail");
    verdict("refused", `Nothing will be sent: the attestation is refused: ${message}`);
    return;
  }
  const e = verified.identity;
  if (verified.mode === "MOCK") {
    row("Evidence signature", "mock evidence is unsigned (anyone can forge it)", "fail");
  } else if (e.simulatedAttestationKey) {
    row("Evidence signature", `signed by simulated attestation key ${toHex(e.simulatedAttestationKey)}`, "pass");
  } else {
    row("Evidence", `${e.tee ?? "hardware"} quote verified against Intel's pinned root and collateral`, "pass");
  }
  row("Key binding", "report data = SHA-512(signing key ‖ encryption key)", "pass");
  row("Run signature", "the run checkpoint is signed by the enclave's data-signing key", "pass");
  row("Encryption key", "not a low-order point", "pass");
  showIdentity(verified);
  showInsecure(verified);
  try {
    constraint.checkIdentity(verified.identity, now());
  } catch (err) {
    row("Constraint", `${constraint.toString()}: ${(err as Error).message}`, "fail");
    verdict("refused", `Nothing will be sent: ${(err as Error).message}`);
    return;
  }
  row("Constraint", constraint.toString(), "pass");
  try {
    storageKey = `conclave-page:client:${constraint.toString()}`;
    client = await EnclaveClient.open(relay, constraint, { storage: new LocalStorageStorage(storageKey) });
    const started = await client.start();
    // The client fetched the attestation again: it must be the one shown.
    if (!equal(started.encryptionKey, verified.encryptionKey)) {
      throw new Error("the host served two different attestations: attest again");
    }
  } catch (err) {
    client = undefined;
    verdict("refused", `Nothing will be sent: ${(err as Error).message}`);
    return;
  }
  satisfied = true;
  verdict("ok", `The enclave satisfies your constraint (${constraint.toString()}). You can send.`);
  el("public-key").textContent = toHex(client.publicKey());
  refreshCheckpoint();
  lock();
}

function refreshCheckpoint(): void {
  if (client) el("checkpoint").textContent = client.checkpoint();
}

function summary(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const m = body as Record<string, unknown>;
  switch (m.kind) {
    case "submitted":
      return `Submitted: ${String(m.count)} numbers recorded.`;
    case "result":
      if ("mean" in m) {
        return `Result: ${String(m.parties)} parties, ${String(m.count)} values, mean ${String(m.mean)}, min ${String(m.min)}, max ${String(m.max)}`;
      }
      return `Result: winner ${String(m.winner)} pays ${String(m.price)}${m.you_won ? " (you won)" : ""}`;
    case "opened":
      return "You are the auctioneer.";
    case "bid_accepted":
      return "Your bid was accepted.";
    case "waiting":
      return "Your set is recorded; waiting for the other party.";
    case "intersection":
      return `Intersection: ${(m.items as string[]).join(", ") || "(empty)"}`;
    case "error":
      return `Refused by the enclave: ${String(m.message)}`;
    default:
      return undefined;
  }
}

function render(reply: EnclaveReply): void {
  const li = document.createElement("li");
  li.className = "reply";
  const text = lossyUtf8.decode(reply.body);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const head = document.createElement("div");
  head.className = "summary";
  head.textContent = (reply.kind === "refused" ? "Refused: " : "") + (summary(parsed) ?? text);
  const meta = document.createElement("div");
  meta.className = "small";
  meta.textContent =
    `topic ${reply.topic}, reply ${reply.sequenceNumber} from state ${formatCheckpoint(reply.state)}, ` +
    (reply.answers === undefined ? "sent to you by the enclave" : `answers your mail ${reply.answers}`);
  li.append(head, meta);
  if (parsed !== undefined) {
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(parsed, null, 2);
    li.append(pre);
  }
  el("replies").append(li);
}

async function guarded(action: () => Promise<void>): Promise<void> {
  if (!client || !satisfied || busy) return;
  busy = true;
  lock();
  showError(undefined);
  try {
    await action();
  } catch (e) {
    showError(e instanceof ClientError || e instanceof InfoError || e instanceof Error ? e.message : String(e));
  } finally {
    busy = false;
    refreshCheckpoint();
    lock();
  }
}

/**
 * Sends `body` on `topic`. The same body while the last mail on the topic is
 * still unanswered is a retry of that mail, not a second one.
 */
function deliver(topic: string, body: Uint8Array): Promise<void> {
  return guarded(async () => {
    const pending = client!.pendingBody(topic);
    const reply =
      pending && equal(pending, body) ? await client!.resendPending(topic) : await client!.sendMail(topic, body);
    if (reply) render(reply);
  });
}

function send(message: Record<string, unknown>): Promise<void> {
  return deliver(sample, utf8.encode(JSON.stringify({ v: 1, ...message })));
}

function poll(): Promise<void> {
  return guarded(async () => {
    for (const reply of await client!.pollMail()) render(reply);
  });
}

function numbers(text: string): number[] {
  return text
    .split(/[\s,;]+/)
    .filter((t) => t.length > 0)
    .map((t) => {
      const n = Number(t);
      if (!Number.isFinite(n)) throw new Error(`${JSON.stringify(t)} is not a number`);
      return n;
    });
}

function showSample(name: Sample): void {
  sample = name;
  el<HTMLSelectElement>("sample").value = name;
  for (const form of document.querySelectorAll<HTMLElement>(".sample-form")) form.hidden = form.dataset.sample !== name;
}

function wire(): void {
  el("attest").addEventListener("click", () => void attest());
  el("constraint").addEventListener("keydown", (e) => {
    if (e.key === "Enter") void attest();
  });
  el<HTMLSelectElement>("sample").addEventListener("change", (e) =>
    showSample((e.target as HTMLSelectElement).value as Sample),
  );
  el("stats-submit").addEventListener("click", () => {
    try {
      void send({ kind: "submit", values: numbers(el<HTMLTextAreaElement>("stats-values").value) });
    } catch (e) {
      showError((e as Error).message);
    }
  });
  el("stats-compute").addEventListener("click", () => void send({ kind: "compute" }));
  el("auction-open").addEventListener("click", () => void send({ kind: "open" }));
  el("auction-close").addEventListener("click", () => void send({ kind: "close" }));
  el("auction-bid").addEventListener("click", () => {
    const amount = Number(el<HTMLInputElement>("auction-amount").value);
    if (!Number.isSafeInteger(amount) || amount < 1) {
      showError("a bid is a whole number of at least 1");
      return;
    }
    const name = el<HTMLInputElement>("auction-name").value.trim();
    void send({ kind: "bid", amount, ...(name ? { name } : {}) });
  });
  el("psi-submit").addEventListener("click", () => {
    const items = el<HTMLTextAreaElement>("psi-items")
      .value.split("\n")
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    void send({ kind: "submit", items });
  });
  el("reverse-send").addEventListener("click", () =>
    void deliver("reverse", utf8.encode(el<HTMLInputElement>("reverse-text").value)),
  );
  el("poll").addEventListener("click", () => void poll());
  el("forget").addEventListener("click", () => {
    if (storageKey) localStorage.removeItem(storageKey);
    el("replies").replaceChildren();
    void attest();
  });
  setInterval(() => {
    if (el<HTMLInputElement>("auto").checked && satisfied && !busy) void poll();
  }, 5000);
}

async function main(): Promise<void> {
  wire();
  lock();
  const params = new URLSearchParams(location.search);
  let named: string | null = params.get("sample");
  if (!named) {
    try {
      const about = (await (await fetch("/v1/page")).json()) as { sample?: string | null };
      named = about.sample ?? null;
    } catch {
      named = null;
    }
  }
  showSample((SAMPLES as readonly string[]).includes(named ?? "") ? (named as Sample) : "stats");
  const constraint = params.get("constraint") ?? localStorage.getItem("conclave-page:constraint") ?? "";
  el<HTMLInputElement>("constraint").value = constraint;
  if (constraint) await attest();
}

void main();
