// Remembers one NUL-terminated string of a message (a statement name, a command tag) and what it
// stood for, and recognises it again by comparing bytes in place: sessions repeat the same few
// names and tags, and a byte comparison costs less than a search, a string decode and a lookup.
// A codec helper: no I/O, state only for the one string it holds.

export class RepeatedCString<T> {
  private readonly bytes: Buffer;
  private length = -1;
  private value: T | undefined;

  /** Strings of more than `capacity` bytes are not remembered. */
  constructor(capacity: number) {
    this.bytes = Buffer.alloc(capacity);
  }

  /**
   * What the remembered string stood for, when the bytes of `buf` from `at` are that string and
   * its NUL terminator lies before `end`; undefined otherwise.
   */
  match(buf: Buffer, at: number, end: number): T | undefined {
    const n = this.length;
    if (n < 0 || at + n >= end || buf[at + n] !== 0) return undefined;
    for (let i = 0; i < n; i++) if (buf[at + i] !== this.bytes[i]) return undefined;
    return this.value;
  }

  /** Remembers `text` (encoded as `encoding`, as it was decoded) and its value. */
  remember(text: string, value: T, encoding: 'utf8' | 'latin1'): void {
    const n = Buffer.byteLength(text, encoding);
    if (n > this.bytes.length) return;
    this.bytes.write(text, 0, encoding);
    this.length = n;
    this.value = value;
  }

  forget(): void {
    this.length = -1;
    this.value = undefined;
  }
}
