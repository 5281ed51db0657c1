// The serial console of an instance, kept bounded: the last `limitBytes` in memory, and a file
// that never grows past twice that (it is rewritten from the memory tail when it would).
import { appendFileSync, readFileSync, statSync, writeFileSync } from "node:fs";

/** The last `limit` characters of everything appended. */
export class ConsoleTail {
  readonly #limit: number;
  #text = "";

  constructor(limit: number, initial = "") {
    this.#limit = limit;
    this.append(initial);
  }

  append(chunk: string): void {
    this.#text += chunk;
    // Trimming only once the text is well past the limit keeps appends cheap.
    if (this.#text.length > this.#limit * 2) this.#text = this.#text.slice(-this.#limit);
  }

  tail(characters = this.#limit): string {
    const limit = Math.min(characters, this.#limit);
    return this.#text.length > limit ? this.#text.slice(-limit) : this.#text;
  }

  /** The last `count` lines, for reports. */
  lastLines(count: number): string {
    const lines = this.tail().replace(/\r/g, "").split("\n");
    if (lines.at(-1) === "") lines.pop();
    return lines.slice(-count).join("\n");
  }
}

/** Cuts a character stream into lines, holding back an incomplete last line. */
export class LineSplitter {
  #pending = "";

  push(chunk: string): string[] {
    this.#pending += chunk;
    const parts = this.#pending.split("\n");
    this.#pending = parts.pop() ?? "";
    // A guest that never prints a newline must not grow this without bound.
    if (this.#pending.length > 64 * 1024) {
      parts.push(this.#pending);
      this.#pending = "";
    }
    return parts.map((line) => line.replace(/\r$/, ""));
  }
}

export class BoundedConsoleLog {
  readonly #path: string;
  readonly #limit: number;
  readonly #memory: ConsoleTail;
  #fileBytes: number;

  constructor(path: string, limitBytes: number) {
    this.#path = path;
    this.#limit = limitBytes;
    let existing = "";
    try {
      existing = readFileSync(path, "utf8");
    } catch {
      writeFileSync(path, "");
    }
    this.#memory = new ConsoleTail(limitBytes, existing);
    this.#fileBytes = statSync(path).size;
  }

  append(chunk: string): void {
    this.#memory.append(chunk);
    const bytes = Buffer.byteLength(chunk);
    if (this.#fileBytes + bytes > this.#limit * 2) {
      const tail = this.#memory.tail(this.#limit);
      writeFileSync(this.#path, tail);
      this.#fileBytes = Buffer.byteLength(tail);
    } else {
      appendFileSync(this.#path, chunk);
      this.#fileBytes += bytes;
    }
  }

  tail(characters?: number): string {
    return this.#memory.tail(characters);
  }

  lastLines(count: number): string {
    return this.#memory.lastLines(count);
  }
}
