// The ClientError a client call fails with (and a test failure if it does not fail).
import { ClientError } from "../src/index.js";

export async function failure(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ClientError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}
