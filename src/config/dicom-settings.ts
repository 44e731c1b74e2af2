// The DICOM network keys of the configuration table (Orthanc's names and meanings): the DICOM server,
// its association checks, the timeouts and the modalities the node talks to.
import { DEFAULTS } from './defaults.ts';
import { aeTitle, modalities, STORAGE_COMMITMENT_TIMEOUT } from './modality-schema.ts';
import type { Setting } from './setting.ts';
import type { Config } from './types.ts';
import { bool, intIn, uint } from './value-schemas.ts';

type DicomKey =
  | 'DicomServerEnabled'
  | 'DicomAet'
  | 'DicomPort'
  | 'DicomCheckCalledAet'
  | 'DicomCheckModalityHost'
  | 'DicomAlwaysAllowEcho'
  | 'DicomAlwaysAllowStore'
  | 'DicomAlwaysAllowFind'
  | 'DicomAlwaysAllowMove'
  | 'DicomScuTimeout'
  | 'DicomScpTimeout'
  | 'DicomStorageCommitmentTimeout'
  | 'DicomModalities';

export const DICOM_SETTINGS: { readonly [K in DicomKey]-?: Setting<Config[K]> } = {
  DicomServerEnabled: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.DicomServerEnabled,
    meaning:
      'Open the DICOM server (C-ECHO, C-STORE, C-FIND, C-MOVE) on DicomPort. Orthanc opens it by default; dicom-xfer only when this is ' +
      'true. It listens on HttpHost: loopback unless RemoteAccessAllowed.',
    source: 'orthanc',
  },
  DicomAet: {
    schema: aeTitle(),
    type: 'string (AE title)',
    default: DEFAULTS.DicomAet,
    meaning: "This node's application entity title: the called AET of its DICOM server, the calling AET when it is the SCU.",
    source: 'orthanc',
  },
  DicomPort: {
    schema: intIn(1, 65535),
    overrideSchema: intIn(0, 65535),
    type: 'integer 1–65535',
    default: DEFAULTS.DicomPort,
    meaning: 'TCP port of the DICOM server. On the command line, 0 picks a free port.',
    source: 'orthanc',
  },
  DicomCheckCalledAet: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.DicomCheckCalledAet,
    meaning: 'Refuse an association whose called AET is not DicomAet.',
    source: 'orthanc',
  },
  DicomCheckModalityHost: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.DicomCheckModalityHost,
    meaning: 'A calling AET is recognised as a modality of DicomModalities only when the association comes from its Host.',
    source: 'orthanc',
  },
  DicomAlwaysAllowEcho: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.DicomAlwaysAllowEcho,
    meaning: 'Answer C-ECHO from any AET; when false, only from the modalities of DicomModalities that allow it.',
    source: 'orthanc',
  },
  DicomAlwaysAllowStore: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.DicomAlwaysAllowStore,
    meaning: 'Accept C-STORE from any AET; when false, only from the modalities of DicomModalities that allow it.',
    source: 'orthanc',
  },
  DicomAlwaysAllowFind: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.DicomAlwaysAllowFind,
    meaning: 'Answer C-FIND from any AET; when false, only from the modalities of DicomModalities that allow it.',
    source: 'orthanc',
  },
  DicomAlwaysAllowMove: {
    schema: bool(),
    type: 'boolean',
    default: DEFAULTS.DicomAlwaysAllowMove,
    meaning: 'Answer C-MOVE from any AET; when false, only from the modalities of DicomModalities that allow it.',
    source: 'orthanc',
  },
  DicomScuTimeout: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: DEFAULTS.DicomScuTimeout,
    unit: 's',
    meaning: 'Seconds the node waits for a modality (connection, association, each answer) when it is the SCU; 0 means no timeout.',
    source: 'orthanc',
  },
  DicomScpTimeout: {
    schema: uint('seconds'),
    type: 'integer ≥ 0',
    default: DEFAULTS.DicomScpTimeout,
    unit: 's',
    meaning: 'Seconds of silence after which the DICOM server closes an association; 0 means never.',
    source: 'orthanc',
  },
  DicomStorageCommitmentTimeout: STORAGE_COMMITMENT_TIMEOUT,
  DicomModalities: {
    schema: modalities,
    type: 'object: name → modality',
    default: {},
    meaning:
      'DICOM modalities, each `[AET, host, port]` (a fourth item names the manufacturer) or an object with `AET`, `Host`, `Port` and ' +
      'optionally `Manufacturer`, `AllowEcho`, `AllowFind`, `AllowMove`, `AllowGet`, `AllowStore`, `AllowStorageCommitment` (or ' +
      "Orthanc's `AllowNAction`/`AllowNEventReport`), `LocalAet`, `Timeout` (s) and `MaximumAssociations` (associations opened at once " +
      'to send to it).',
    source: 'orthanc',
  },
};
