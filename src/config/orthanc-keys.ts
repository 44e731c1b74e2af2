// Keys that Orthanc (or one of its common plugins) understands but dicom-xfer does not use. They are
// accepted without a warning so that an Orthanc configuration file loads as it is; the few whose value
// would change what an Orthanc user expects get a short note.

/**
 * Orthanc keys that dicom-xfer ignores. A `note` function returns a sentence when the value asks for a
 * behaviour that dicom-xfer will not provide; otherwise the key is ignored silently.
 */
export interface IgnoredKey {
  readonly key: string;
  readonly note?: (value: unknown) => string | undefined;
}

function when(test: (v: unknown) => boolean, text: string): (v: unknown) => string | undefined {
  return (v) => (test(v) ? text : undefined);
}

const isTrue = (v: unknown): boolean => v === true;
const isNonEmptyString = (v: unknown): boolean => typeof v === 'string' && v !== '';
const isPositive = (v: unknown): boolean => typeof v === 'number' && v > 0;

/** Orthanc core keys (Orthanc 1.12's Configuration.json) that dicom-xfer reads no meaning from. */
const CORE: readonly IgnoredKey[] = [
  { key: 'IndexDirectory' },
  { key: 'TemporaryDirectory' },
  { key: 'StorageCompression', note: when(isTrue, 'instances are stored uncompressed') },
  { key: 'MaximumPatientCount', note: when(isPositive, 'the patient count is not limited') },
  { key: 'MaximumStorageMode' },
  { key: 'MaximumStorageCacheSize' },
  { key: 'LuaScripts' },
  { key: 'LuaHeartBeatPeriod' },
  { key: 'Plugins' },
  { key: 'JobsEngineThreadsCount' },
  { key: 'HttpServerEnabled', note: when((v) => v === false, 'the HTTP server is always enabled') },
  { key: 'OrthancExplorerEnabled' },
  { key: 'HttpCompressionEnabled' },
  { key: 'WebDavEnabled' },
  { key: 'WebDavDeleteAllowed' },
  { key: 'WebDavUploadAllowed' },
  { key: 'DefaultEncoding' },
  { key: 'AcceptedTransferSyntaxes' },
  { key: 'DeflatedTransferSyntaxAccepted' },
  { key: 'JpegTransferSyntaxAccepted' },
  { key: 'Jpeg2000TransferSyntaxAccepted' },
  { key: 'JpegLosslessTransferSyntaxAccepted' },
  { key: 'JpipTransferSyntaxAccepted' },
  { key: 'Mpeg2TransferSyntaxAccepted' },
  { key: 'Mpeg4TransferSyntaxAccepted' },
  { key: 'H265TransferSyntaxAccepted' },
  { key: 'RleTransferSyntaxAccepted' },
  { key: 'UnknownSopClassAccepted' },
  { key: 'SslMinimumProtocolVersion' },
  { key: 'SslCiphersAccepted' },
  { key: 'SslVerifyPeers', note: when(isTrue, 'HTTPS client certificates are not verified') },
  { key: 'SslTrustedClientCertificates' },
  { key: 'DicomTlsEnabled' },
  { key: 'DicomTlsCertificate' },
  { key: 'DicomTlsPrivateKey' },
  { key: 'DicomTlsTrustedCertificates' },
  { key: 'DicomTlsRemoteCertificateRequired' },
  { key: 'DicomTlsMinimumProtocolVersion' },
  { key: 'DicomTlsCiphersAccepted' },
  { key: 'DicomAlwaysAllowFindWorklist' },
  { key: 'DicomAlwaysAllowGet' },
  { key: 'DicomModalitiesInDatabase' },
  { key: 'DicomEchoChecksFind' },
  { key: 'DicomScuPreferredTransferSyntax' },
  { key: 'DicomThreadsCount' },
  { key: 'DicomDefaultRetrieveMethod' },
  {
    key: 'OrthancPeersInDatabase',
    note: when(isTrue, 'peers are read from OrthancPeers in this file only'),
  },
  { key: 'HttpProxy', note: when(isNonEmptyString, 'outgoing HTTP calls do not go through a proxy') },
  { key: 'HttpVerbose' },
  { key: 'UserMetadata' },
  { key: 'UserContentType' },
  { key: 'StrictAetComparison' },
  { key: 'StoreMD5ForAttachments' },
  { key: 'LimitFindResults' },
  { key: 'LimitFindInstances' },
  { key: 'LogExportedResources' },
  { key: 'KeepAlive' },
  { key: 'KeepAliveTimeout' },
  { key: 'TcpNoDelay' },
  { key: 'HttpThreadsCount' },
  { key: 'StoreDicom' },
  { key: 'DicomAssociationCloseDelay' },
  { key: 'QueryRetrieveSize' },
  { key: 'CaseSensitivePN' },
  { key: 'LoadPrivateDictionary' },
  { key: 'Dictionary' },
  { key: 'SynchronousCMove' },
  { key: 'MediaArchiveSize' },
  { key: 'StorageAccessOnFind' },
  { key: 'MetricsEnabled' },
  { key: 'ExecuteLuaEnabled' },
  { key: 'RestApiWriteToFileSystemEnabled' },
  { key: 'HttpRequestTimeout' },
  { key: 'DefaultPrivateCreator' },
  { key: 'StorageCommitmentReportsSize' },
  { key: 'TranscodeDicomProtocol' },
  { key: 'BuiltinDecoderTranscoderOrder' },
  { key: 'IngestTranscoding' },
  { key: 'IngestTranscodingOfUncompressed' },
  { key: 'IngestTranscodingOfCompressed' },
  { key: 'DicomLossyTranscodingQuality' },
  { key: 'SyncStorageArea' },
  { key: 'MallocArenaMax' },
  { key: 'DeidentifyLogs' },
  { key: 'DeidentifyLogsDicomVersion' },
  { key: 'MaximumPduLength' },
  { key: 'CheckRevisions' },
  { key: 'SynchronousZipStream' },
  { key: 'ZipLoaderThreads' },
  { key: 'Warnings' },
  { key: 'ExtraMainDicomTags' },
  { key: 'DatabaseServerIdentifier' },
  { key: 'ReadOnly', note: when(isTrue, 'the store is writable') },
];

/**
 * Sections of Orthanc plugins that often share a configuration file with the core: ignored whole,
 * whatever they contain.
 */
const PLUGIN_SECTIONS: readonly string[] = [
  'AdvancedStorage',
  'Authorization',
  'AwsS3Storage',
  'AzureBlobStorage',
  'ConnectivityChecks',
  'DelayedDeletion',
  'Gdcm',
  'GoogleCloudPlatform',
  'Housekeeper',
  'Indexer',
  'Java',
  'MultitenantDicom',
  'MySQL',
  'Odbc',
  'OrthancExplorer2',
  'Python',
  'PythonScript',
  'PythonVerbose',
  'ServeFolders',
  'StoneWebViewer',
  'Tcia',
  'VolView',
  'WebViewer',
  'Worklists',
  'Wsi',
];

/** Every Orthanc key ignored by dicom-xfer, by name. */
export const ORTHANC_IGNORED_KEYS: ReadonlyMap<string, IgnoredKey> = new Map(
  [...CORE, ...PLUGIN_SECTIONS.map((key) => ({ key }))].map((k) => [k.key, k]),
);

/**
 * Keys that the Transfers Accelerator plugin once read (or that a newer release may add) inside
 * `Transfers`, which dicom-xfer knows of and ignores.
 */
export const TRANSFERS_IGNORED_KEYS: ReadonlyMap<string, IgnoredKey> = new Map([
  [
    'BidirectionalPeers',
    {
      key: 'BidirectionalPeers',
      note: () => 'replaced by the RemoteSelf property of each peer in OrthancPeers',
    },
  ],
]);
