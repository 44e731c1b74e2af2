// Decoding of DICOM text values to UTF-8 according to SpecificCharacterSet (0008,0005), the way Orthanc 1.10
// does it, so that the values dicom-xfer shows and hashes are the ones an Orthanc server shows and hashes.
//
// Orthanc's rules, observed on real files: the first non-empty value of SpecificCharacterSet picks one
// decoder for the whole value (no ISO 2022 switching); several values mean "code extensions", and then the
// ISO 2022 escape sequences are removed after decoding. No SpecificCharacterSet means Latin-1; an unknown
// one means ASCII with every other byte dropped. Bytes that the character set cannot map are dropped.

/** Turns the raw bytes of one text value into a JavaScript (UTF-16) string. */
export type TextDecodeFn = (bytes: Uint8Array) => string;

type Encoding =
  | 'ascii'
  | 'utf8'
  | 'latin1'
  | 'latin2'
  | 'latin3'
  | 'latin4'
  | 'latin5'
  | 'cyrillic'
  | 'arabic'
  | 'greek'
  | 'hebrew'
  | 'thai'
  | 'japanese' // ISO_IR 13: Orthanc decodes it as Shift_JIS
  | 'japaneseKanji' // ISO 2022 IR 87: ISO-2022-JP
  | 'korean'
  | 'chinese' // GB18030 and GBK
  | 'simplifiedChinese'; // ISO 2022 IR 58: GB2312

/** The defined terms of SpecificCharacterSet that Orthanc 1.10 knows, with the decoder each selects. */
const DEFINED_TERMS: Record<string, Encoding> = {
  'ISO_IR 6': 'ascii',
  'ISO 2022 IR 6': 'ascii',
  'ISO_IR 192': 'utf8',
  'ISO_IR 100': 'latin1',
  'ISO 2022 IR 100': 'latin1',
  'ISO_IR 101': 'latin2',
  'ISO 2022 IR 101': 'latin2',
  'ISO_IR 109': 'latin3',
  'ISO 2022 IR 109': 'latin3',
  'ISO_IR 110': 'latin4',
  'ISO 2022 IR 110': 'latin4',
  'ISO_IR 148': 'latin5',
  'ISO 2022 IR 148': 'latin5',
  'ISO_IR 144': 'cyrillic',
  'ISO 2022 IR 144': 'cyrillic',
  'ISO_IR 127': 'arabic',
  'ISO 2022 IR 127': 'arabic',
  'ISO_IR 126': 'greek',
  'ISO 2022 IR 126': 'greek',
  'ISO_IR 138': 'hebrew',
  'ISO 2022 IR 138': 'hebrew',
  'ISO_IR 166': 'thai',
  'ISO 2022 IR 166': 'thai',
  'ISO_IR 13': 'japanese',
  'ISO 2022 IR 13': 'japanese',
  'ISO 2022 IR 87': 'japaneseKanji',
  'ISO_IR 149': 'korean',
  'ISO 2022 IR 149': 'korean',
  GB18030: 'chinese',
  GBK: 'chinese',
  'ISO 2022 IR 58': 'simplifiedChinese',
};

/** WHATWG labels of the single-byte character sets (upper half only: see singleByteTable). */
const SINGLE_BYTE_LABELS: Partial<Record<Encoding, string>> = {
  latin2: 'iso-8859-2',
  latin3: 'iso-8859-3',
  latin4: 'iso-8859-4',
  latin5: 'iso-8859-9',
  cyrillic: 'iso-8859-5',
  arabic: 'iso-8859-6',
  greek: 'iso-8859-7',
  hebrew: 'iso-8859-8',
  thai: 'windows-874',
};

const tables = new Map<Encoding, string[]>();

/**
 * Byte -> character table of an ISO 8859 set. Bytes below 0xA0 are ASCII and C1 controls (as in iconv;
 * the WHATWG decoders map some of them to Windows code page characters); an unmapped byte gives "".
 */
function singleByteTable(enc: Encoding, label: string): string[] {
  let t = tables.get(enc);
  if (t) return t;
  const decoder = new TextDecoder(label);
  t = [];
  for (let b = 0; b < 256; b++) {
    if (b < 0xa0) {
      t.push(String.fromCharCode(b));
    } else {
      const c = decoder.decode(Uint8Array.of(b));
      t.push(c === '\uFFFD' ? '' : c);
    }
  }
  tables.set(enc, t);
  return t;
}

/** What Orthanc does for ASCII: keeps the printable ASCII characters, drops everything else. */
function decodeAscii(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
  return s;
}

function decodeLatin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

const multiByteDecoders = new Map<string, TextDecoder>();

/** Decodes with a WHATWG decoder and drops what it could not map (Orthanc skips invalid input). */
function decodeWith(label: string, bytes: Uint8Array): string {
  let d = multiByteDecoders.get(label);
  if (!d) {
    d = new TextDecoder(label);
    multiByteDecoders.set(label, d);
  }
  const s = d.decode(bytes);
  return s.includes('\uFFFD') ? s.replaceAll('\uFFFD', '') : s;
}

function decoderFor(enc: Encoding): TextDecodeFn {
  switch (enc) {
    case 'ascii':
      return decodeAscii;
    case 'latin1':
      return decodeLatin1;
    case 'utf8':
      return (b) => decodeWith('utf-8', b);
    case 'japanese':
      // iconv's SHIFT_JIS (which Orthanc uses) maps the single bytes 0x5C and 0x7E to YEN SIGN and
      // OVERLINE; the WHATWG decoder keeps them ASCII. Any lone U+005C / U+007E came from those bytes.
      return (b) => decodeWith('shift_jis', b).replaceAll('\\', '\u00A5').replaceAll('~', '\u203E');
    case 'japaneseKanji':
      return (b) => decodeWith('iso-2022-jp', b);
    case 'korean':
      // KS X 1001 in the upper half (G1), as DICOM encodes it: EUC-KR byte for byte.
      return (b) => decodeWith('euc-kr', b);
    case 'chinese':
      return (b) => decodeWith('gb18030', b);
    case 'simplifiedChinese':
      return (b) => decodeWith('gbk', b);
    case 'latin2':
    case 'latin3':
    case 'latin4':
    case 'latin5':
    case 'cyrillic':
    case 'arabic':
    case 'greek':
    case 'hebrew':
    case 'thai': {
      const label = SINGLE_BYTE_LABELS[enc] ?? 'iso-8859-1';
      return (bytes) => {
        const t = singleByteTable(enc, label);
        let s = '';
        for (const b of bytes) s += t[b] ?? '';
        return s;
      };
    }
  }
}

/**
 * Removes ISO 2022 escape sequences (ESC, intermediate bytes 0x20-0x2F, one final byte 0x30-0x7E), as
 * Orthanc does after decoding a value of a data set that declares code extensions.
 */
export function removeIso2022EscapeSequences(s: string): string {
  if (!s.includes('\x1b')) return s;
  let out = '';
  let i = 0;
  while (i < s.length) {
    if (s.charCodeAt(i) === 0x1b) {
      let j = i + 1;
      while (j < s.length && s.charCodeAt(j) >= 0x20 && s.charCodeAt(j) <= 0x2f) j++;
      const final = j < s.length ? s.charCodeAt(j) : -1;
      if (final >= 0x30 && final <= 0x7e) {
        i = j + 1;
        continue;
      }
    }
    out += s[i];
    i++;
  }
  return out;
}

export interface CharsetInfo {
  /** The decoder that Orthanc would use for the text values of this data set. */
  decode: TextDecodeFn;
  /** Whether SpecificCharacterSet has several values (ISO 2022 code extensions). */
  codeExtensions: boolean;
  /** The defined term that selected the decoder, or undefined for the default (Latin-1). */
  term: string | undefined;
  /** False when the term is not one Orthanc knows (values are then reduced to ASCII). */
  known: boolean;
}

/**
 * The decoder for a data set whose SpecificCharacterSet is `value` (its raw text, backslash-separated;
 * undefined when the attribute is absent). Never throws.
 */
export function charsetFor(value: string | undefined): CharsetInfo {
  if (value === undefined) return { decode: decodeLatin1, codeExtensions: false, term: undefined, known: true };
  const tokens = value.split('\\');
  const codeExtensions = tokens.length > 1;
  for (const token of tokens) {
    const term = token.trim();
    if (term === '') continue;
    const enc = DEFINED_TERMS[term];
    if (enc === undefined) return { decode: decodeAscii, codeExtensions, term, known: false };
    const base = decoderFor(enc);
    // ASCII drops ESC anyway; the others keep it, so the sequences are removed after decoding.
    const decode: TextDecodeFn = codeExtensions && enc !== 'ascii' ? (b) => removeIso2022EscapeSequences(base(b)) : base;
    return { decode, codeExtensions, term, known: true };
  }
  return { decode: decodeLatin1, codeExtensions, term: undefined, known: true };
}

/** Convenience: decodes one value's bytes for a data set with the given SpecificCharacterSet. */
export function decodeDicomText(bytes: Uint8Array, specificCharacterSet: string | undefined): string {
  return charsetFor(specificCharacterSet).decode(bytes);
}
