// Reads the small proto3 subset our .proto files use into a descriptor that the wire codec
// (protobuf.ts) interprets. Parsing happens at build time (generate-descriptor.ts); the
// provider process only loads the generated descriptor, which keeps startup cheap.

export type ScalarType = "string" | "bytes" | "bool" | "int32" | "int64" | "uint32" | "uint64" | "double";

export type FieldType =
  | { kind: "scalar"; scalar: ScalarType }
  | { kind: "message"; typeName: string }
  | { kind: "enum"; typeName: string };

export interface ProtoField {
  name: string;
  number: number;
  type: FieldType;
  repeated: boolean;
  /** map<string, V>: the field is a repeated entry message on the wire. */
  mapValue?: FieldType;
  /** Oneof members and `optional` fields are encoded even when they hold the default. */
  explicitPresence: boolean;
}

export interface ProtoMessage {
  fields: ProtoField[];
}

export interface ProtoMethod {
  name: string;
  requestType: string;
  responseType: string;
}

export interface ProtoDescriptor {
  messages: Record<string, ProtoMessage>;
  enums: Record<string, Record<string, number>>;
  services: Record<string, ProtoMethod[]>;
}

const SCALARS = new Set<string>(["string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double"]);

function tokenize(source: string): string[] {
  const withoutComments = source.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
  return withoutComments.match(/"[^"]*"|[A-Za-z_][\w.]*|\d+|[{}();=<>,[\]]/g) ?? [];
}

interface UnresolvedField extends Omit<ProtoField, "type" | "mapValue"> {
  typeRef: string;
  mapValueRef?: string;
  scope: string;
}

export function parseProto(source: string): ProtoDescriptor {
  const tokens = tokenize(source);
  let position = 0;
  const peek = (): string | undefined => tokens[position];
  const next = (): string => {
    const token = tokens[position++];
    if (token === undefined) throw new Error("unexpected end of .proto");
    return token;
  };
  const expect = (wanted: string): void => {
    const token = next();
    if (token !== wanted) throw new Error(`.proto: expected "${wanted}", got "${token}" (token ${position})`);
  };

  let packageName = "";
  const messageNames = new Set<string>();
  const enums: Record<string, Record<string, number>> = {};
  const unresolved = new Map<string, UnresolvedField[]>();
  const services: Record<string, { name: string; request: string; response: string; scope: string }[]> = {};

  const qualify = (scope: string, name: string) => (scope ? `${scope}.${name}` : name);

  const skipStatement = () => {
    while (next() !== ";");
  };

  const parseEnum = (scope: string) => {
    const name = qualify(scope, next());
    expect("{");
    const values: Record<string, number> = {};
    while (peek() !== "}") {
      const valueName = next();
      expect("=");
      values[valueName] = Number(next());
      skipOptionsAndSemicolon();
    }
    expect("}");
    enums[name] = values;
  };

  const skipOptionsAndSemicolon = () => {
    if (peek() === "[") while (next() !== "]");
    expect(";");
  };

  const parseField = (scope: string, fields: UnresolvedField[], first: string, oneof: boolean) => {
    let repeated = false;
    let optional = false;
    let typeRef = first;
    let mapValueRef: string | undefined;
    if (typeRef === "repeated") {
      repeated = true;
      typeRef = next();
    } else if (typeRef === "optional") {
      optional = true;
      typeRef = next();
    }
    if (typeRef === "map") {
      expect("<");
      const keyType = next();
      if (keyType !== "string") throw new Error(".proto: only map<string, V> is supported");
      expect(",");
      mapValueRef = next();
      expect(">");
      repeated = true;
    }
    const name = next();
    expect("=");
    const number = Number(next());
    skipOptionsAndSemicolon();
    fields.push({
      name,
      number,
      repeated,
      explicitPresence: oneof || optional,
      typeRef,
      ...(mapValueRef === undefined ? {} : { mapValueRef }),
      scope,
    });
  };

  const parseMessage = (scope: string) => {
    const name = qualify(scope, next());
    messageNames.add(name);
    const fields: UnresolvedField[] = [];
    unresolved.set(name, fields);
    expect("{");
    while (peek() !== "}") {
      const token = next();
      if (token === "message") parseMessage(name);
      else if (token === "enum") parseEnum(name);
      else if (token === "option" || token === "reserved") skipStatement();
      else if (token === "oneof") {
        next();
        expect("{");
        while (peek() !== "}") parseField(name, fields, next(), true);
        expect("}");
      } else parseField(name, fields, token, false);
    }
    expect("}");
  };

  const parseService = (scope: string) => {
    const name = qualify(scope, next());
    const methods: { name: string; request: string; response: string; scope: string }[] = [];
    expect("{");
    while (peek() !== "}") {
      expect("rpc");
      const methodName = next();
      expect("(");
      const request = next();
      expect(")");
      expect("returns");
      expect("(");
      const response = next();
      expect(")");
      if (peek() === "{") {
        while (next() !== "}");
        if (peek() === ";") next();
      } else expect(";");
      methods.push({ name: methodName, request, response, scope });
    }
    expect("}");
    services[name] = methods;
  };

  while (position < tokens.length) {
    const token = next();
    if (token === "syntax" || token === "option" || token === "import") skipStatement();
    else if (token === "package") {
      packageName = next();
      expect(";");
    } else if (token === "message") parseMessage(packageName);
    else if (token === "enum") parseEnum(packageName);
    else if (token === "service") parseService(packageName);
    else throw new Error(`.proto: unexpected "${token}"`);
  }

  // Protobuf name resolution: search the reference from the innermost scope outwards.
  const resolveName = (scope: string, reference: string): string => {
    const parts = scope.split(".");
    for (let depth = parts.length; depth >= 0; depth--) {
      const candidate = qualify(parts.slice(0, depth).join("."), reference);
      if (messageNames.has(candidate) || candidate in enums) return candidate;
    }
    throw new Error(`.proto: unknown type "${reference}" in ${scope}`);
  };
  const resolveType = (scope: string, reference: string): FieldType => {
    if (SCALARS.has(reference)) return { kind: "scalar", scalar: reference as ScalarType };
    const typeName = resolveName(scope, reference);
    return typeName in enums ? { kind: "enum", typeName } : { kind: "message", typeName };
  };

  const messages: Record<string, ProtoMessage> = {};
  for (const [name, fields] of unresolved) {
    messages[name] = {
      fields: fields.map(({ typeRef, mapValueRef, scope, ...field }) => {
        if (mapValueRef !== undefined) {
          return {
            ...field,
            type: { kind: "scalar", scalar: "string" },
            mapValue: resolveType(scope, mapValueRef),
          };
        }
        return { ...field, type: resolveType(scope, typeRef) };
      }),
    };
  }
  const resolvedServices: Record<string, ProtoMethod[]> = {};
  for (const [name, methods] of Object.entries(services)) {
    resolvedServices[name] = methods.map((method) => ({
      name: method.name,
      requestType: resolveName(method.scope, method.request),
      responseType: resolveName(method.scope, method.response),
    }));
  }
  return { messages, enums, services: resolvedServices };
}
