/** The token of an `Authorization: Bearer <token>` header; undefined when there is none or it is another scheme. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
