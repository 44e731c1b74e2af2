// `dicom-xfer find`: look for patients, studies, series or instances on a node (a dicom-xfer node with
// either store, or a plain Orthanc) through POST /tools/find, and print a table or JSON. Also resolves a
// StudyInstanceUID or an accession number to the study's Orthanc ID for `send` and `pull`.
import type { Command } from 'commander';
import { Option } from 'commander';
import { NodeClient, UsageError, addTargetOptions, resolveTarget, type TargetFlags } from './http.ts';
import { errorExit, formatTable, usageExit } from './jobs.ts';

export type FindLevel = 'Patient' | 'Study' | 'Series' | 'Instance';

export interface FindFlags extends TargetFlags {
  level: string;
  patientName?: string;
  patientId?: string;
  accession?: string;
  date?: string;
  modality?: string;
  studyUid?: string;
  limit?: string;
  json?: boolean;
}

/** The body of POST /tools/find. */
export interface FindBody {
  Level: FindLevel;
  Query: Record<string, string>;
  Expand: boolean;
  Limit?: number;
}

const LEVELS: Record<string, FindLevel> = { patient: 'Patient', study: 'Study', series: 'Series', instance: 'Instance' };
/** An Orthanc resource ID: the SHA-1 of the DICOM UIDs written as five groups of 8 hex digits. */
export const ORTHANC_ID = /^[0-9a-f]{8}(-[0-9a-f]{8}){4}$/;
const DEFAULT_LIMIT = 100;

/**
 * A study date or range for DICOM: YYYYMMDD or YYYY-MM-DD alone, or a range of them around `-` or `..`
 * with either end open (20200101-20201231, -20201231, 2020-01-01..). Throws UsageError otherwise.
 */
export function parseDateOption(raw: string): string {
  const v = raw.trim();
  const day = (s: string): string | undefined => {
    const m = /^(\d{4})-?(\d{2})-?(\d{2})$/.exec(s.trim());
    return m ? `${m[1]}${m[2]}${m[3]}` : undefined;
  };
  const single = day(v);
  if (single) return single;
  const parts = v.includes('..') ? v.split('..') : /^\d{8}$|^\d{8}-|-\d{8}$/.test(v) ? v.split('-') : [];
  if (parts.length === 2) {
    const [a = '', b = ''] = parts;
    const from = a.trim() === '' ? '' : day(a);
    const to = b.trim() === '' ? '' : day(b);
    if (from !== undefined && to !== undefined && (from !== '' || to !== '')) return `${from}-${to}`;
  }
  throw new UsageError(
    `--date "${raw}" is not a date or a range: give YYYYMMDD (or YYYY-MM-DD), or a range like 20200101-20201231, -20201231, 20200101-, ` +
      `2020-01-01..2020-12-31`,
  );
}

/** The /tools/find body for the flags; throws UsageError for a bad level, date, limit or combination. */
export function buildFindBody(flags: FindFlags): FindBody {
  const level = LEVELS[flags.level.trim().toLowerCase()];
  if (!level) throw new UsageError(`--level must be patient, study, series or instance, not "${flags.level}"`);
  const q: Record<string, string> = {};
  const put = (key: string, v: string | undefined) => {
    if (v !== undefined && v.trim() !== '') q[key] = v.trim();
  };
  put('PatientName', flags.patientName);
  put('PatientID', flags.patientId);
  if (level !== 'Patient') {
    put('AccessionNumber', flags.accession);
    put('StudyInstanceUID', flags.studyUid);
    if (flags.date !== undefined) q.StudyDate = parseDateOption(flags.date);
    if (flags.modality !== undefined) put(level === 'Study' ? 'ModalitiesInStudy' : 'Modality', flags.modality.toUpperCase());
  } else if (flags.accession ?? flags.studyUid ?? flags.date ?? flags.modality) {
    throw new UsageError(
      '--accession, --study-uid, --date and --modality describe studies: use them with --level study, series or instance',
    );
  }
  const body: FindBody = { Level: level, Query: q, Expand: true };
  const limit = flags.limit === undefined ? DEFAULT_LIMIT : Number(flags.limit);
  if (!Number.isSafeInteger(limit) || limit < 0) throw new UsageError(`--limit must be a whole number (0: no limit), not "${flags.limit}"`);
  if (limit > 0) body.Limit = limit;
  return body;
}

type Resource = Record<string, unknown>;

function tagsOf(r: Resource | undefined, key = 'MainDicomTags'): Record<string, string> {
  const v = r?.[key];
  return typeof v === 'object' && v !== null ? (v as Record<string, string>) : {};
}

function asList(v: unknown, what: string): Resource[] {
  if (!Array.isArray(v)) throw new Error(`the node answered ${what} with something that is not a list`);
  return v.filter((x): x is Resource => typeof x === 'object' && x !== null);
}

/** "Doe^John" as "Doe John", as people read names. */
function personName(v: string | undefined): string {
  return (v ?? '').replace(/\^+/g, ' ').trim();
}

/** "20200115" as "2020-01-15"; other shapes as they are. */
function isoDate(v: string | undefined): string {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(v ?? '');
  return m ? `${m[1]}-${m[2]}-${m[3]}` : (v ?? '');
}

/** One line of the table, whatever the level. */
export interface FoundRow {
  Level: FindLevel;
  ID: string;
  PatientName: string;
  PatientID: string;
  StudyDate: string;
  Description: string;
  Modalities: string[];
  Instances: number;
  AccessionNumber: string;
  StudyInstanceUID: string;
}

/**
 * The rows for what /tools/find answered: each resource with what people recognise it by, read from the
 * node (a study's series give its modalities and instance count; a series or instance its study).
 */
export async function describeFound(client: NodeClient, level: FindLevel, found: Resource[]): Promise<FoundRow[]> {
  const cache = new Map<string, Promise<unknown>>();
  const get = (path: string): Promise<unknown> => {
    let p = cache.get(path);
    if (!p) {
      p = client.json<unknown>('GET', path);
      cache.set(path, p);
    }
    return p;
  };
  const studyRow = async (study: Resource): Promise<Omit<FoundRow, 'Level' | 'ID' | 'Description' | 'Modalities' | 'Instances'>> => {
    const st = tagsOf(study);
    const pt = tagsOf(study, 'PatientMainDicomTags');
    return {
      PatientName: pt.PatientName ?? '',
      PatientID: pt.PatientID ?? '',
      StudyDate: st.StudyDate ?? '',
      AccessionNumber: st.AccessionNumber ?? '',
      StudyInstanceUID: st.StudyInstanceUID ?? '',
    };
  };
  const seriesOf = async (studyId: string) => asList(await get(`/studies/${studyId}/series`), `GET /studies/${studyId}/series`);
  const summary = (series: Resource[]) => ({
    Modalities: [...new Set(series.map((s) => tagsOf(s).Modality ?? '').filter((m) => m !== ''))].sort(),
    Instances: series.reduce((n, s) => n + (Array.isArray(s.Instances) ? s.Instances.length : 0), 0),
  });
  const rows: FoundRow[] = [];
  for (const r of found) {
    const id = String(r.ID ?? '');
    if (level === 'Patient') {
      const pt = tagsOf(r);
      const studies = asList(await get(`/patients/${id}/studies`), `GET /patients/${id}/studies`);
      const series = (await Promise.all(studies.map((s) => seriesOf(String(s.ID))))).flat();
      rows.push({
        Level: level,
        ID: id,
        PatientName: pt.PatientName ?? '',
        PatientID: pt.PatientID ?? '',
        StudyDate: '',
        Description: `${studies.length} ${studies.length === 1 ? 'study' : 'studies'}`,
        ...summary(series),
        AccessionNumber: '',
        StudyInstanceUID: '',
      });
    } else if (level === 'Study') {
      rows.push({
        Level: level,
        ID: id,
        ...(await studyRow(r)),
        Description: tagsOf(r).StudyDescription ?? '',
        ...summary(await seriesOf(id)),
      });
    } else {
      const series = level === 'Series' ? r : ((await get(`/series/${String(r.ParentSeries)}`)) as Resource);
      const study = (await get(`/studies/${String(series.ParentStudy)}`)) as Resource;
      const se = tagsOf(series);
      const description =
        level === 'Series' ? (se.SeriesDescription ?? '') : `${se.SeriesDescription ?? 'series'} #${tagsOf(r).InstanceNumber ?? '?'}`;
      rows.push({
        Level: level,
        ID: id,
        ...(await studyRow(study)),
        Description: description,
        Modalities: se.Modality ? [se.Modality] : [],
        Instances: level === 'Series' ? (Array.isArray(series.Instances) ? series.Instances.length : 0) : 1,
      });
    }
  }
  return rows;
}

function cut(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export function formatFoundTable(rows: readonly FoundRow[]): string {
  return formatTable(
    ['PATIENT', 'PATIENT ID', 'DATE', 'DESCRIPTION', 'MODALITY', 'INSTANCES', 'ORTHANC ID'],
    rows.map((r) => [
      cut(personName(r.PatientName) || '–', 30),
      cut(r.PatientID || '–', 20),
      isoDate(r.StudyDate) || '–',
      cut(r.Description || '–', 40),
      r.Modalities.join(',') || '–',
      String(r.Instances),
      r.ID,
    ]),
  );
}

async function postFind(client: NodeClient, body: unknown): Promise<Resource[]> {
  return asList(
    await client.json<unknown>('POST', '/tools/find', { body: JSON.stringify(body), contentType: 'application/json' }),
    'POST /tools/find',
  );
}

/**
 * The Orthanc ID of the one study that `value` names on the node: an Orthanc ID as it is, else a
 * StudyInstanceUID (when it has the shape of one), else an accession number. Throws UsageError naming
 * the matches when several studies match, or saying so when none does.
 */
export async function resolveStudy(client: NodeClient, value: string, where: string): Promise<string> {
  const v = value.trim();
  if (ORTHANC_ID.test(v.toLowerCase())) return v.toLowerCase();
  if (v === '' || /[*?\\]/.test(v)) {
    throw new UsageError(`--study "${value}" is not an Orthanc ID, a StudyInstanceUID or an accession number (no wildcards)`);
  }
  let matches: Resource[] = [];
  let by = '';
  if (/^[0-9]+(\.[0-9]+)*$/.test(v)) {
    matches = await postFind(client, { Level: 'Study', Query: { StudyInstanceUID: v }, Expand: true, Limit: 20 });
    by = 'StudyInstanceUID';
  }
  if (matches.length === 0) {
    matches = await postFind(client, { Level: 'Study', Query: { AccessionNumber: v }, Expand: true, Limit: 20 });
    by = 'accession number';
  }
  if (matches.length === 1) return String(matches[0]?.ID);
  if (matches.length === 0) {
    throw new UsageError(
      `--study "${value}" is not an Orthanc ID, and no study ${where} has it as StudyInstanceUID or accession number (look with ` +
        `\`dicom-xfer find\`)`,
    );
  }
  const rows = await describeFound(client, 'Study', matches);
  throw new UsageError(
    `--study "${value}" is the ${by} of ${matches.length} studies ${where}; give the Orthanc ID of the one to ` +
      `send:\n${formatFoundTable(rows)}`,
  );
}

/** Runs `find`: 0 found or not, 1 the node refused or could not be reached, 2 usage. */
export async function runFind(flags: FindFlags): Promise<number> {
  let body: FindBody;
  let client: NodeClient;
  try {
    body = buildFindBody(flags);
    client = new NodeClient(resolveTarget(flags), { connections: 4 });
  } catch (e) {
    return errorExit('find', e);
  }
  try {
    const found = await postFind(client, body);
    const rows = await describeFound(client, body.Level, found);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    } else if (rows.length === 0) {
      process.stderr.write(`Nothing matches on ${client.target.url}.\n`);
    } else {
      process.stdout.write(`${formatFoundTable(rows)}\n`);
      const what = {
        Patient: ['patient', 'patients'],
        Study: ['study', 'studies'],
        Series: ['series', 'series'],
        Instance: ['instance', 'instances'],
      }[body.Level];
      const more = body.Limit !== undefined && rows.length >= body.Limit ? ` (the first ${body.Limit}: raise --limit to see more)` : '';
      process.stderr.write(`${rows.length} ${rows.length === 1 ? what[0] : what[1]}${more}.\n`);
    }
    return 0;
  } catch (e) {
    return errorExit('find', e);
  } finally {
    await client.close();
  }
}

export function registerFind(program: Command): void {
  const cmd = program
    .command('find')
    .description('Find patients, studies, series or instances on a node (its /tools/find), printed as a table or JSON');
  addTargetOptions(cmd)
    .addOption(new Option('--level <level>', 'what to list: patient, study, series or instance').default('study'))
    .option('--patient-name <name>', 'patient name; * and ? are wildcards, case ignored (e.g. "DOE*")')
    .option('--patient-id <id>', 'patient ID (wildcards allowed)')
    .option('--accession <number>', 'accession number (wildcards allowed)')
    .option('--date <date>', 'study date YYYYMMDD, or a range: 20200101-20201231, -20201231, 20200101-')
    .option('--modality <modality>', 'a modality of the study (CT, MR...), or of the series at series and instance level')
    .option('--study-uid <uid>', 'StudyInstanceUID')
    .option('--limit <n>', `most results (default ${DEFAULT_LIMIT}; 0: all)`)
    .option('--json', 'print the results as JSON');
  usageExit(cmd).action(async (flags: FindFlags) => {
    process.exitCode = await runFind(flags);
  });
}
