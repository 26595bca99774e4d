/**
 * The relay: what a client needs from whoever carries its mail, and its
 * implementation over the web host's HTTP API with `fetch` (docs/http-api.md).
 *
 * ```text
 *  attestation()  GET  {base}/v1/attestation             → encoded EnclaveInstanceInfo
 *  deliver()      POST {base}/v1/mail  (Correlation-ID)  → 200 reply + Reply-ID, or 204
 *  poll()         GET  {base}/v1/mail/{id}               → {"replies": [{"id", "mail" (base64)}]}
 *  acknowledge()  POST {base}/v1/mail/{id}/ack {"ids"}   → {"deleted": n}
 * ```
 *
 * Nothing a relay says is authenticated: its errors carry the host's stable
 * code, a host that cannot be reached gives `UNREACHABLE`, and an answer that
 * is not what the API promises gives `BAD_RESPONSE`.
 */
import { fromBase64 } from "./bytes.js";

/** A reply waiting in the host's queue. */
export interface QueuedMail {
  readonly id: number;
  readonly bytes: Uint8Array;
}

/** A relay's refusal, with a stable machine-readable code. */
export class RelayError extends Error {
  override readonly name = "RelayError";
  constructor(
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
  }
}

/** The code of a transport failure: the mail may or may not have arrived. */
export const UNREACHABLE = "UNREACHABLE";
/** The code of an answer that does not follow the API. */
export const BAD_RESPONSE = "BAD_RESPONSE";

/** Carries mail between one client and an enclave's host. */
export interface MailRelay {
  /** The enclave's encoded EnclaveInstanceInfo. */
  attestation(): Promise<Uint8Array>;
  /** Delivers one mail; returns the first reply for `correlationId`, if the enclave sent one. */
  deliver(correlationId: string, mail: Uint8Array): Promise<QueuedMail | undefined>;
  /** The replies queued for `correlationId`, oldest first; they stay queued until acknowledged. */
  poll(correlationId: string): Promise<QueuedMail[]>;
  /** Deletes the given replies from the queue. */
  acknowledge(correlationId: string, ids: readonly number[]): Promise<void>;
}

const CORRELATION_ID = /^[A-Za-z0-9._-]{1,256}$/;

function checkCorrelationId(id: string): void {
  if (!CORRELATION_ID.test(id)) {
    throw new RelayError(
      "INVALID_CORRELATION_ID",
      "invalid correlation id: use 1 to 256 letters, digits, '-', '_' or '.'",
    );
  }
}

/** Options of [[HttpRelay]]. */
export interface HttpRelayOptions {
  /** Milliseconds before a request gives up (default 60 000). */
  timeoutMs?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof globalThis.fetch;
}

/** A relay to the web host at `baseUrl` (`http://host:port`; `""` means the page's own origin). */
export class HttpRelay implements MailRelay {
  readonly base: string;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof globalThis.fetch;

  constructor(baseUrl: string, options: HttpRelayOptions = {}) {
    const base = baseUrl.replace(/\/+$/, "");
    if (base !== "" && !/^https?:\/\/[^/]/.test(base)) {
      throw new RelayError("INVALID_URL", `invalid host URL ${JSON.stringify(baseUrl)}: expected http://HOST:PORT`);
    }
    this.base = base;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  private async request(path: string, init: RequestInit): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
    const where = this.base || "the host";
    let response: Response;
    let body: Uint8Array;
    try {
      response = await this.fetchFn(this.base + path, { ...init, signal: AbortSignal.timeout(this.timeoutMs) });
      body = new Uint8Array(await response.arrayBuffer());
    } catch (e) {
      throw new RelayError(UNREACHABLE, `cannot reach ${where}: ${(e as Error).message}`);
    }
    if (response.status >= 400) {
      let error: { error?: unknown; message?: unknown } | undefined;
      try {
        error = JSON.parse(new TextDecoder().decode(body)) as typeof error;
      } catch {
        error = undefined;
      }
      if (typeof error?.error === "string" && typeof error.message === "string") {
        throw new RelayError(error.error, error.message);
      }
      throw new RelayError(BAD_RESPONSE, `HTTP status ${response.status} without a JSON error from ${where}`);
    }
    return { status: response.status, headers: response.headers, body };
  }

  async attestation(): Promise<Uint8Array> {
    const { body } = await this.request("/v1/attestation", {
      method: "GET",
      headers: { Accept: "application/octet-stream" },
    });
    return body;
  }

  async deliver(correlationId: string, mail: Uint8Array): Promise<QueuedMail | undefined> {
    checkCorrelationId(correlationId);
    const { status, headers, body } = await this.request("/v1/mail", {
      method: "POST",
      headers: { "Correlation-ID": correlationId, "Content-Type": "application/octet-stream" },
      body: mail as BodyInit,
    });
    if (status === 204) return undefined;
    if (status !== 200) throw new RelayError(BAD_RESPONSE, `unexpected HTTP status ${status} for a delivery`);
    const id = Number(headers.get("reply-id"));
    if (!headers.get("reply-id") || !Number.isSafeInteger(id) || id < 0) {
      throw new RelayError(BAD_RESPONSE, "a reply without a valid Reply-ID header");
    }
    return { id, bytes: body };
  }

  async poll(correlationId: string): Promise<QueuedMail[]> {
    checkCorrelationId(correlationId);
    const { body } = await this.request(`/v1/mail/${correlationId}`, { method: "GET" });
    let parsed: { replies?: { id?: unknown; mail?: unknown }[] };
    try {
      parsed = JSON.parse(new TextDecoder().decode(body)) as typeof parsed;
    } catch (e) {
      throw new RelayError(BAD_RESPONSE, `unreadable poll answer: ${(e as Error).message}`);
    }
    if (!Array.isArray(parsed?.replies)) throw new RelayError(BAD_RESPONSE, "unreadable poll answer: no replies list");
    return parsed.replies.map((reply) => {
      const bytes = typeof reply.mail === "string" ? fromBase64(reply.mail) : undefined;
      if (!Number.isSafeInteger(reply.id) || bytes === undefined) {
        throw new RelayError(BAD_RESPONSE, `reply ${String(reply.id)} is not an id with base64 mail`);
      }
      return { id: reply.id as number, bytes };
    });
  }

  async acknowledge(correlationId: string, ids: readonly number[]): Promise<void> {
    checkCorrelationId(correlationId);
    await this.request(`/v1/mail/${correlationId}/ack`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids }),
    });
  }
}
