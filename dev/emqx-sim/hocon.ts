/**
 * A reader for the subset of HOCON that deploy/emqx/emqx.conf is written in:
 * objects (`key { }` or `key = { }`), arrays, quoted and triple-quoted strings,
 * unquoted words, numbers, booleans, null, dotted keys (`a.b.c = 1` nests),
 * `#` and `//` comments, and later keys merging into earlier objects as HOCON
 * merges them. Anything beyond that subset — substitutions (`${...}` outside
 * a string), `include`, `+=`, value concatenation — is an error rather than a
 * guess, so the tests never read the file differently from EMQX silently.
 */
export type HoconValue = string | number | boolean | null | HoconValue[] | HoconObject;
export interface HoconObject {
  [key: string]: HoconValue;
}

export class HoconError extends Error {
  constructor(message: string, line: number) {
    super(`${message} (line ${line})`);
    this.name = 'HoconError';
  }
}

type Token =
  | { kind: 'punct'; value: '{' | '}' | '[' | ']' | ',' | '=' | ':'; line: number }
  | { kind: 'newline'; line: number }
  | { kind: 'string'; value: string; line: number }
  | { kind: 'word'; value: string; line: number }
  | { kind: 'eof'; line: number };

// Characters HOCON forbids in unquoted strings (plus whitespace).
const FORBIDDEN_UNQUOTED = new Set(['$', '"', '{', '}', '[', ']', ':', '=', ',', '+', '#', '`', '^', '?', '!', '@', '*', '&', '\\']);

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const char = text[i] as string;
    if (char === '\n') {
      tokens.push({ kind: 'newline', line });
      line += 1;
      i += 1;
    } else if (char === ' ' || char === '\t' || char === '\r' || char === '\uFEFF') {
      i += 1;
    } else if (char === '#' || text.startsWith('//', i)) {
      while (i < text.length && text[i] !== '\n') i += 1;
    } else if (char === '$' && text[i + 1] === '{') {
      throw new HoconError('substitutions are not supported by this reader', line);
    } else if (char === '+' && text[i + 1] === '=') {
      throw new HoconError('"+=" is not supported by this reader', line);
    } else if ('{}[],=:'.includes(char)) {
      tokens.push({ kind: 'punct', value: char as '{' | '}' | '[' | ']' | ',' | '=' | ':', line });
      i += 1;
    } else if (text.startsWith('"""', i)) {
      const end = text.indexOf('"""', i + 3);
      if (end < 0) throw new HoconError('unterminated """ string', line);
      // HOCON: quotes directly before the closing """ belong to the string.
      let close = end;
      while (text[close + 3] === '"') close += 1;
      const value = text.slice(i + 3, close);
      tokens.push({ kind: 'string', value, line });
      line += value.split('\n').length - 1;
      i = close + 3;
    } else if (char === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') {
        if (text[j] === '\n') throw new HoconError('newline in a quoted string', line);
        j += text[j] === '\\' ? 2 : 1;
      }
      if (j >= text.length) throw new HoconError('unterminated string', line);
      let value: unknown;
      try {
        value = JSON.parse(text.slice(i, j + 1));
      } catch {
        throw new HoconError('invalid escape in a quoted string', line);
      }
      tokens.push({ kind: 'string', value: value as string, line });
      i = j + 1;
    } else if (FORBIDDEN_UNQUOTED.has(char)) {
      throw new HoconError(`unexpected character ${JSON.stringify(char)}`, line);
    } else {
      let j = i;
      while (
        j < text.length &&
        !FORBIDDEN_UNQUOTED.has(text[j] as string) &&
        !/\s/.test(text[j] as string) &&
        !text.startsWith('//', j)
      ) {
        j += 1;
      }
      tokens.push({ kind: 'word', value: text.slice(i, j), line });
      i = j;
    }
  }
  tokens.push({ kind: 'eof', line });
  return tokens;
}

function isObject(value: HoconValue | undefined): value is HoconObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** HOCON's merge of a repeated key: objects merge recursively, anything else is replaced. */
function mergeInto(target: HoconObject, key: string, value: HoconValue): void {
  const existing = target[key];
  if (isObject(existing) && isObject(value)) {
    for (const [childKey, childValue] of Object.entries(value)) mergeInto(existing, childKey, childValue);
  } else {
    target[key] = value;
  }
}

class Parser {
  private position = 0;
  constructor(private readonly tokens: Token[]) {}

  private peek(): Token {
    return this.tokens[this.position] as Token;
  }

  private next(): Token {
    const token = this.peek();
    this.position += 1;
    return token;
  }

  private skipNewlines(): void {
    while (this.peek().kind === 'newline') this.position += 1;
  }

  private isPunct(token: Token, value: string): boolean {
    return token.kind === 'punct' && token.value === value;
  }

  parseRoot(): HoconObject {
    this.skipNewlines();
    if (this.isPunct(this.peek(), '{')) {
      this.next();
      const root = this.parseFields('}');
      this.skipNewlines();
      if (this.peek().kind !== 'eof') throw new HoconError('text after the root object', this.peek().line);
      return root;
    }
    return this.parseFields('eof');
  }

  /** Fields up to the closing `}` (or the end of the file for a root without braces). */
  private parseFields(close: '}' | 'eof'): HoconObject {
    const object: HoconObject = {};
    for (;;) {
      this.skipNewlines();
      const token = this.peek();
      if (close === '}' && this.isPunct(token, '}')) {
        this.next();
        return object;
      }
      if (close === 'eof' && token.kind === 'eof') return object;
      if (token.kind === 'eof') throw new HoconError('unexpected end of file, expected "}"', token.line);
      const path = this.parseKey();
      const separator = this.peek();
      let value: HoconValue;
      if (this.isPunct(separator, '=') || this.isPunct(separator, ':')) {
        this.next();
        value = this.parseValue();
      } else if (this.isPunct(separator, '{')) {
        value = this.parseValue();
      } else {
        throw new HoconError(`expected "=", ":" or "{" after ${path.join('.')}`, separator.line);
      }
      let nested: HoconValue = value;
      for (let index = path.length - 1; index > 0; index -= 1) nested = { [path[index] as string]: nested };
      mergeInto(object, path[0] as string, nested);
      this.endOfField(close);
    }
  }

  private endOfField(close: '}' | 'eof'): void {
    const token = this.peek();
    if (token.kind === 'newline' || this.isPunct(token, ',')) {
      this.next();
      return;
    }
    if ((close === '}' && this.isPunct(token, '}')) || token.kind === 'eof') return;
    throw new HoconError('value concatenation is not supported by this reader', token.line);
  }

  private parseKey(): string[] {
    const token = this.next();
    if (token.kind === 'string') return [token.value];
    if (token.kind === 'word') {
      if (token.value === 'include') throw new HoconError('include is not supported by this reader', token.line);
      const path = token.value.split('.');
      if (path.some((segment) => segment === '')) throw new HoconError(`invalid key ${token.value}`, token.line);
      return path;
    }
    throw new HoconError('expected a key', token.line);
  }

  private parseValue(): HoconValue {
    this.skipNewlines();
    const token = this.next();
    if (token.kind === 'punct' && token.value === '{') return this.parseFields('}');
    if (token.kind === 'punct' && token.value === '[') return this.parseArray();
    if (token.kind === 'string') return token.value;
    if (token.kind === 'word') {
      if (token.value === 'true') return true;
      if (token.value === 'false') return false;
      if (token.value === 'null') return null;
      if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(token.value)) return Number(token.value);
      return token.value;
    }
    throw new HoconError('expected a value', token.line);
  }

  private parseArray(): HoconValue[] {
    const items: HoconValue[] = [];
    for (;;) {
      this.skipNewlines();
      if (this.isPunct(this.peek(), ']')) {
        this.next();
        return items;
      }
      items.push(this.parseValue());
      this.skipNewlines();
      const token = this.peek();
      if (this.isPunct(token, ',')) this.next();
      else if (!this.isPunct(token, ']')) throw new HoconError('expected "," or "]" in an array', token.line);
    }
  }
}

export function parseHocon(text: string): HoconObject {
  return new Parser(tokenize(text)).parseRoot();
}

/** The value at a dotted path (`a.b.c`); array elements by 0-based index. */
export function hoconAt(root: HoconValue, path: string): HoconValue | undefined {
  let current: HoconValue | undefined = root;
  for (const segment of path.split('.')) {
    if (Array.isArray(current) && /^\d+$/.test(segment)) current = current[Number(segment)];
    else if (isObject(current)) current = current[segment];
    else return undefined;
  }
  return current;
}

export function hoconObject(root: HoconValue, path: string): HoconObject {
  const value = hoconAt(root, path);
  if (!isObject(value)) throw new Error(`${path} is not an object in the EMQX configuration`);
  return value;
}

export function hoconString(root: HoconValue, path: string): string {
  const value = hoconAt(root, path);
  if (typeof value !== 'string') throw new Error(`${path} is not a string in the EMQX configuration`);
  return value;
}

export function hoconArray(root: HoconValue, path: string): HoconValue[] {
  const value = hoconAt(root, path);
  if (!Array.isArray(value)) throw new Error(`${path} is not an array in the EMQX configuration`);
  return value;
}
