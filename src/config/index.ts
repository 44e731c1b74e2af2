// Public face of the configuration module: load, validate and describe dicom-xfer's configuration.
export { ANY_HOST, DEFAULTS, GiB, HOUR, KiB, LOOPBACK_HOST, MiB, MINUTE, SECOND, TRANSFERS_DEFAULTS } from './defaults.ts';
export {
  CONFIG_ENV_VAR,
  loadConfig,
  OVERRIDES_ORIGIN,
  parseConfigText,
  type LoadedConfig,
  type LoadOptions,
  type ParseOptions,
} from './load.ts';
export { ORTHANC_IGNORED_KEYS, TRANSFERS_IGNORED_KEYS, type IgnoredKey } from './orthanc-keys.ts';
export { CONFIG_REFERENCE_PATH, configReferenceMarkdown } from './reference.ts';
export {
  configJsonSchema,
  describeConfig,
  RESERVED_PEER_KEYS,
  SETTINGS,
  TRANSFERS_SETTINGS,
  type ConfigKeyInfo,
  type Setting,
  type SettingSource,
} from './schema.ts';
export {
  LOG_LEVELS,
  type Config,
  type ConfigOverrides,
  type LogLevel,
  type PeerConfig,
  type PeerInput,
  type TransfersConfig,
} from './types.ts';
