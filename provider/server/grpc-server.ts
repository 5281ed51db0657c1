// A unary-only gRPC server on node:http2 with mutual TLS. Terraform only makes unary calls
// to the provider (the go-plugin stdio and broker streams are optional), so this is all of
// gRPC the provider needs, and it starts much faster than @grpc/grpc-js plus protobufjs.
//
// gRPC over HTTP/2: POST /package.Service/Method, content-type application/grpc, body
// frames of [compressed flag: 1 byte][length: 4 bytes BE][protobuf message]; the status
// goes in trailers (grpc-status, grpc-message).

import {
  createSecureServer,
  type Http2SecureServer,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
import type { ProtobufCodec, ProtoObject } from "../protocol/protobuf.ts";

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
} as const;

export interface UnaryMethod {
  requestType: string;
  responseType: string;
  handle(request: ProtoObject, call: { signal: AbortSignal }): Promise<ProtoObject>;
  /** Runs once the response has been fully written (GRPCController.Shutdown exits here). */
  afterResponse?(): void;
}

export interface GrpcServerOptions {
  codec: ProtobufCodec;
  /** Keyed by path: "/tfplugin6.Provider/PlanResourceChange". */
  methods: Map<string, UnaryMethod>;
  keyPem: string;
  certPem: string;
  /** Only clients presenting a certificate signed by this (Terraform's one-shot cert) are accepted. */
  clientCaPem: string;
  onCallError?(path: string, error: unknown): void;
}

export function encodeGrpcFrame(message: Uint8Array): Uint8Array {
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  return frame;
}

export function decodeGrpcFrame(body: Uint8Array): Uint8Array {
  if (body.length < 5) throw new Error("gRPC message frame is truncated");
  if (body[0] !== 0) throw new Error("compressed gRPC messages are not supported");
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1);
  if (5 + length > body.length) throw new Error("gRPC message frame is truncated");
  return body.subarray(5, 5 + length);
}

function respondWithStatus(stream: ServerHttp2Stream, status: number, message: string) {
  if (stream.destroyed || stream.headersSent) return;
  // A "trailers-only" response: status in the one HEADERS frame that ends the stream.
  stream.respond(
    {
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-status": String(status),
      "grpc-message": encodeURIComponent(message),
    },
    { endStream: true },
  );
}

function handleStream(options: GrpcServerOptions, stream: ServerHttp2Stream, headers: IncomingHttpHeaders) {
  const path = String(headers[":path"] ?? "");
  const method = options.methods.get(path);
  if (!method) {
    respondWithStatus(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${path}`);
    return;
  }
  const callAbort = new AbortController();
  let finished = false;
  stream.on("close", () => {
    if (!finished) callAbort.abort(new Error("the client cancelled the call"));
  });
  stream.on("error", () => callAbort.abort(new Error("the call's stream failed")));
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  stream.on("end", async () => {
    let response: Uint8Array;
    try {
      const request = options.codec.decode(method.requestType, decodeGrpcFrame(Buffer.concat(chunks)));
      const result = await method.handle(request, { signal: callAbort.signal });
      response = encodeGrpcFrame(options.codec.encode(method.responseType, result));
    } catch (error) {
      finished = true;
      options.onCallError?.(path, error);
      respondWithStatus(stream, GrpcStatus.INTERNAL, error instanceof Error ? error.message : String(error));
      return;
    }
    finished = true;
    if (stream.destroyed) return;
    if (method.afterResponse) stream.once("close", method.afterResponse);
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(response);
  });
}

export function createGrpcServer(options: GrpcServerOptions): Http2SecureServer {
  const server = createSecureServer({
    key: options.keyPem,
    cert: options.certPem,
    ca: options.clientCaPem,
    requestCert: true,
    rejectUnauthorized: true,
    allowHTTP1: false,
  });
  server.on("stream", (stream, headers) => handleStream(options, stream, headers));
  return server;
}
