// The zod schema of `DicomModalities`: Orthanc's two forms of a DICOM modality, `[AET, host, port]`
// (with an optional fourth item, the manufacturer) and the object form with its `Allow...` switches.
import { z } from 'zod';
import { DEFAULTS } from './defaults.ts';
import { badPeerName, namedEntries, uint } from './value-schemas.ts';
import type { ModalityConfig } from './types.ts';

const PLAIN = { plain: true } as const;

/** An application entity title: 1 to 16 characters of the default repertoire, not all spaces, no backslash. */
export function isValidAet(aet: string): boolean {
  return aet.trim().length > 0 && aet.length <= 16 && /^[\x20-\x5b\x5d-\x7e]+$/.test(aet);
}

export const AET_EXPECTED = 'an AE title (1 to 16 printable ASCII characters, no backslash)';

const aet = () => z.string({ error: AET_EXPECTED }).refine(isValidAet, { error: AET_EXPECTED });
const host = () => z.string({ error: 'a host name or IP address' }).min(1, { error: 'a host name or IP address' });
const PORT_EXPECTED = 'a TCP port (1–65535)';
const port = () =>
  z
    .union([z.number(), z.string().regex(/^\d{1,5}$/)], { error: PORT_EXPECTED })
    .transform(Number)
    .refine((n) => Number.isInteger(n) && n >= 1 && n <= 65535, { error: PORT_EXPECTED });
const flag = () => z.boolean({ error: 'true or false' });

type ModalityFields = Omit<ModalityConfig, 'name'>;

function withDefaults(aetValue: string, hostValue: string, portValue: number, manufacturer: string): ModalityFields {
  return {
    aet: aetValue,
    host: hostValue,
    port: portValue,
    manufacturer,
    allowEcho: true,
    allowFind: true,
    allowMove: true,
    allowGet: true,
    allowStore: true,
    allowStorageCommitment: true,
  };
}

const shortModality = z
  .tuple([aet(), host(), port()], { error: '[AET, host, port] or [AET, host, port, manufacturer]' })
  .rest(z.string({ error: 'a manufacturer (string)' }))
  .refine((a) => a.length <= 4, { error: '[AET, host, port] or [AET, host, port, manufacturer]' })
  .transform((a): ModalityFields => withDefaults(a[0], a[1], a[2], a[3] ?? 'Generic'));

const longModality = z
  .object(
    {
      AET: aet(),
      Host: host(),
      Port: port(),
      Manufacturer: z.string({ error: 'a string' }).optional(),
      AllowEcho: flag().optional(),
      AllowFind: flag().optional(),
      AllowFindWorklist: flag().optional(),
      AllowGet: flag().optional(),
      AllowMove: flag().optional(),
      AllowStore: flag().optional(),
      AllowStorageCommitment: flag().optional(),
      AllowNAction: flag().optional(),
      AllowNEventReport: flag().optional(),
      AllowTranscoding: flag().optional(),
      UseDicomTls: flag().optional(),
      LocalAet: aet().optional(),
      Timeout: z.number({ error: 'seconds (integer ≥ 0)' }).int().min(0).optional(),
      MaximumAssociations: z.number({ error: 'an integer 1–64' }).int().min(1).max(64).optional(),
    },
    { error: 'an object with "AET", "Host" and "Port"' },
  )
  .strict()
  .transform((o, ctx): ModalityFields => {
    if (o.UseDicomTls === true) {
      ctx.issues.push({
        code: 'custom',
        message: 'DICOM TLS is not supported yet: remove "UseDicomTls"',
        path: ['UseDicomTls'],
        input: true,
        params: PLAIN,
      });
    }
    const m = withDefaults(o.AET, o.Host, o.Port, o.Manufacturer ?? 'Generic');
    m.allowEcho = o.AllowEcho ?? true;
    m.allowFind = o.AllowFind ?? true;
    m.allowGet = o.AllowGet ?? true;
    m.allowMove = o.AllowMove ?? true;
    m.allowStore = o.AllowStore ?? true;
    // Orthanc's two switches of storage commitment (N-ACTION out, N-EVENT-REPORT back) and the plain one.
    m.allowStorageCommitment = (o.AllowStorageCommitment ?? true) && (o.AllowNAction ?? true) && (o.AllowNEventReport ?? true);
    if (o.LocalAet !== undefined) m.localAet = o.LocalAet;
    if (o.Timeout !== undefined && o.Timeout > 0) m.timeout = o.Timeout;
    if (o.MaximumAssociations !== undefined) m.maximumAssociations = o.MaximumAssociations;
    return m;
  });

const MODALITY_EXPECTED = '[AET, host, port] or an object with "AET", "Host" and "Port"';

/** `DicomModalities`: name → modality, names under the same rule as peer names. */
export const modalities = namedEntries<ModalityFields>({
  short: shortModality,
  long: longModality,
  record: 'an object of modality name to modality',
  expected: MODALITY_EXPECTED,
  badName: (name) => badPeerName(name).replace('peer', 'modality'),
});

export const aeTitle = aet;

/** The entry of `DicomStorageCommitmentTimeout` in the table of settings (schema.ts). */
export const STORAGE_COMMITMENT_TIMEOUT = {
  schema: uint('seconds'),
  type: 'integer ≥ 0',
  default: DEFAULTS.DicomStorageCommitmentTimeout,
  unit: 's',
  meaning:
    "Seconds a C-STORE job that asked for storage commitment waits for the modality's report (N-EVENT-REPORT) after its " +
    'request (N-ACTION), across restarts; past it the job fails with StorageCommitment "Failed". 0 means an hour.',
  source: 'dicom-xfer',
} as const;
