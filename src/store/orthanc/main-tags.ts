// The main tags of an instance of an Orthanc store, read from Orthanc's REST API (the instance, its
// series, its study): what routing rules match on.
import { isXferError } from '../../errors.ts';
import type { InstanceTags } from '../types.ts';
import type { OrthancClient } from './client.ts';

/** The IDs and flat main tags of an instance, or undefined when Orthanc does not hold it. Three requests. */
export async function orthancMainTags(client: OrthancClient, instanceId: string): Promise<InstanceTags | undefined> {
  const get = async (path: string): Promise<Record<string, unknown> | undefined> => {
    try {
      return await client.json<Record<string, unknown>>({ method: 'GET', path });
    } catch (e) {
      if (isXferError(e, 'UnknownResource')) return undefined;
      throw e;
    }
  };
  const instance = await get(`/instances/${instanceId}`);
  const seriesId = instance?.['ParentSeries'];
  if (!instance || typeof seriesId !== 'string') return undefined;
  const series = await get(`/series/${seriesId}`);
  const studyId = series?.['ParentStudy'];
  if (!series || typeof studyId !== 'string') return undefined;
  const study = await get(`/studies/${studyId}`);
  const patientId = study?.['ParentPatient'];
  if (!study || typeof patientId !== 'string') return undefined;
  const tags: Record<string, string> = {};
  // From the top down, so that a lower level's value wins.
  for (const doc of [study['PatientMainDicomTags'], study['MainDicomTags'], series['MainDicomTags'], instance['MainDicomTags']]) {
    if (typeof doc !== 'object' || doc === null) continue;
    for (const [k, v] of Object.entries(doc)) if (typeof v === 'string') tags[k] = v;
  }
  return { ids: { patient: patientId, study: studyId, series: seriesId, instance: instanceId }, tags };
}
