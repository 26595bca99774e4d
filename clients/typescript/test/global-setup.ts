// Builds `conclave` once before the tests that start hosts.
import { buildConclave } from "./host.js";

export default function setup(): void {
  buildConclave();
}
