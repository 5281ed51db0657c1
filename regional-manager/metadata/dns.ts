// DNS for guests: the messages (RFC 1035) and what a guest is answered. A guest asks at the
// metadata address over TCP (QEMU's user network forwards TCP only; the guest image's resolver
// says `options use-vc`), so each message is framed by a two-byte length (RFC 1035 4.2.2, RFC 7766).
// Only names under the asking instance's project zone are answered; everything else is REFUSED:
// the manager never recurses to the outside.
import { type InternalNameAnswer, isWithinZone } from "../../schemas/internal-names.ts";

export const RCODE = { noError: 0, formErr: 1, servFail: 2, nxDomain: 3, notImp: 4, refused: 5 } as const;
const TYPE_A = 1;
const TYPE_ANY = 255;
const CLASS_IN = 1;
const HEADER_BYTES = 12;
/** Larger queries are not ones a stub resolver sends. */
export const MAX_QUERY_BYTES = 512;

export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
  /** The question as it was sent (name, type, class), echoed in the answer. */
  wire: Buffer;
}

export interface DnsQuery {
  id: number;
  /** Recursion desired: echoed, as RFC 1035 asks. */
  rd: boolean;
  opcode: number;
  /** Exactly one question, or undefined when the message has another count (answered FORMERR). */
  question: DnsQuestion | undefined;
}

/** The query in `message`, or undefined when it is not one (no header, or a response). */
export function parseQuery(message: Buffer): DnsQuery | undefined {
  if (message.length < HEADER_BYTES) return undefined;
  const flags = message.readUInt16BE(2);
  if (flags & 0x8000) return undefined;
  const query: DnsQuery = {
    id: message.readUInt16BE(0),
    rd: (flags & 0x0100) !== 0,
    opcode: (flags >> 11) & 0x0f,
    question: undefined,
  };
  if (message.readUInt16BE(4) !== 1) return query;
  const name = readName(message, HEADER_BYTES);
  if (!name || name.end + 4 > message.length) return query;
  query.question = {
    name: name.labels.join("."),
    type: message.readUInt16BE(name.end),
    class: message.readUInt16BE(name.end + 2),
    wire: message.subarray(HEADER_BYTES, name.end + 4),
  };
  return query;
}

/** A question's name: plain labels only (a query has nothing to compress against). */
function readName(message: Buffer, start: number): { labels: string[]; end: number } | undefined {
  const labels: string[] = [];
  let offset = start;
  let length = 0;
  for (;;) {
    if (offset >= message.length) return undefined;
    const size = message[offset] ?? 0;
    if (size === 0) return { labels, end: offset + 1 };
    if (size > 63) return undefined;
    length += size + 1;
    if (length > 255 || offset + 1 + size > message.length) return undefined;
    labels.push(message.toString("latin1", offset + 1, offset + 1 + size));
    offset += 1 + size;
  }
}

/** The response to `query`: its question echoed, `addresses` as A records, authoritative. */
export function buildResponse(
  query: DnsQuery,
  rcode: number,
  addresses: readonly string[] = [],
  ttlSeconds = 0,
): Buffer {
  const question = query.question?.wire ?? Buffer.alloc(0);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt16BE(query.id, 0);
  // QR, the query's opcode, AA (the zone is ours), RD echoed; RA clear: no recursion here.
  const flags = 0x8000 | (query.opcode << 11) | 0x0400 | (query.rd ? 0x0100 : 0) | rcode;
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(query.question ? 1 : 0, 4);
  header.writeUInt16BE(addresses.length, 6);
  const records = addresses.map((address) => {
    const record = Buffer.alloc(16);
    // The owner name is the question's, by a pointer to it (offset 12).
    record.writeUInt16BE(0xc000 | HEADER_BYTES, 0);
    record.writeUInt16BE(TYPE_A, 2);
    record.writeUInt16BE(CLASS_IN, 4);
    record.writeUInt32BE(ttlSeconds, 6);
    record.writeUInt16BE(4, 10);
    address.split(".").forEach((octet, index) => {
      record[12 + index] = Number(octet);
    });
    return record;
  });
  return Buffer.concat([header, question, ...records]);
}

/** Looks a name up for the asking instance: undefined when it does not exist; throws when it cannot tell. */
export type InternalNameLookup = (name: string) => Promise<InternalNameAnswer | undefined>;

/**
 * The answer to one message from a guest whose project zone is `zone` (undefined: the instance
 * has no internal name, so nothing is answered), or undefined when the message is not a query.
 */
export async function answerMessage(
  message: Buffer,
  zone: string | undefined,
  lookup: InternalNameLookup,
  ttlSeconds: number,
): Promise<Buffer | undefined> {
  const query = parseQuery(message);
  if (!query) return undefined;
  if (query.opcode !== 0) return buildResponse(query, RCODE.notImp);
  const question = query.question;
  if (!question) return buildResponse(query, RCODE.formErr);
  if (question.class !== CLASS_IN || zone === undefined || !isWithinZone(question.name, zone)) {
    return buildResponse(query, RCODE.refused);
  }
  let answer: InternalNameAnswer | undefined;
  try {
    answer = await lookup(question.name);
  } catch {
    return buildResponse(query, RCODE.servFail);
  }
  if (!answer) return buildResponse(query, RCODE.nxDomain);
  // The name exists; it has only A records (AAAA and the rest: an empty answer, not NXDOMAIN).
  const addresses = question.type === TYPE_A || question.type === TYPE_ANY ? answer.addresses : [];
  return buildResponse(query, RCODE.noError, addresses, ttlSeconds);
}

/**
 * Splits a TCP stream into DNS messages (each after a two-byte length). `push` returns the
 * complete messages received so far, or throws on a message larger than `maxBytes`.
 */
export class DnsStreamFramer {
  #pending: Buffer = Buffer.alloc(0);
  readonly #maxBytes: number;

  constructor(maxBytes = MAX_QUERY_BYTES) {
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): Buffer[] {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const messages: Buffer[] = [];
    while (this.#pending.length >= 2) {
      const size = this.#pending.readUInt16BE(0);
      if (size > this.#maxBytes)
        throw new Error(`a DNS message of ${size} bytes (at most ${this.#maxBytes})`);
      if (this.#pending.length < 2 + size) break;
      messages.push(this.#pending.subarray(2, 2 + size));
      this.#pending = this.#pending.subarray(2 + size);
    }
    return messages;
  }
}

/** A message framed for TCP. */
export function frameMessage(message: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(message.length, 0);
  return Buffer.concat([length, message]);
}
