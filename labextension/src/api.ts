/**
 * The server extension's REST API (starburst_jupyter/server/handlers.py), through the lab's
 * ServerConnection: base URL, token or cookie authentication and the XSRF header come from it.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface ICost {
  accrued: number;
  projected: number;
  cap: number | null;
  label: string;
  estimate: boolean;
}

export interface IWaves {
  count: number;
  started: number;
  finished: number;
  concurrency: number;
  workers: number;
}

export interface IWorker {
  index: number;
  wave: number | null;
  pid: number | null;
  started: number | null;
  ended: number | null;
  exit_code: number | null;
  reason: string | null;
  state: string;
}

export interface IJobSummary {
  id: string;
  name: string;
  backend: string;
  state: string;
  /** The state as shown, e.g. "running (kernel gone: attach or cancel)". */
  state_label?: string;
  /** Active, but the kernel that launched it is gone: attach or cancel it. */
  owner_gone?: boolean;
  active: boolean;
  message: string;
  created: number | null;
  started: number | null;
  finished: number | null;
  elapsed: number | null;
  total: number;
  done: number;
  failed: number;
  cancelled: number;
  progress: number;
  /** Items per second over the run (null: none finished yet). */
  rate?: number | null;
  /** Seconds left at that rate while the job runs (null: unknown, or ended). */
  left?: number | null;
  workers: { count: number; running: number; list?: IWorker[] };
  waves: IWaves;
  cost: ICost;
}

export interface IJobDetail extends IJobSummary {
  spec: { [key: string]: unknown };
  outcomes: string; // one letter per item; '' for a big job, whose letters come as runs
  outcome_runs?: string; // e.g. '999990D10R' (counts and letters) for a job of more than 4096 items
  outcome_counts: { [name: string]: number };
  failures: { index: number; error: string }[];
}

export interface IJobList {
  jobs: IJobSummary[];
  matched: number;
  omitted: number;
  version: string;
  now: number;
}

export interface ILogChunk {
  job: string;
  worker: number;
  cursor: number;
  next_cursor: number;
  lines: string[];
  more: boolean;
  worker_running: boolean;
}

export interface ICancelReply {
  job: IJobDetail;
  was: string;
  cancelled: boolean;
  already_finished: boolean;
}

const settings = ServerConnection.makeSettings();

export async function requestAPI<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'starburst/api', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (error) {
      data = { message: text };
    }
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, (data && data.message) || response.statusText);
  }
  return data as T;
}

export function listJobs(): Promise<IJobList> {
  return requestAPI<IJobList>('jobs');
}

export async function getJob(id: string): Promise<IJobDetail> {
  const reply = await requestAPI<{ job: IJobDetail }>(`jobs/${encodeURIComponent(id)}`);
  return reply.job;
}

export function getLog(id: string, worker: number, cursor: number | null, tail: number): Promise<ILogChunk> {
  const query = cursor === null ? `tail=${tail}` : `cursor=${cursor}`;
  return requestAPI<ILogChunk>(`jobs/${encodeURIComponent(id)}/workers/${worker}/log?${query}`);
}

export function cancelJob(id: string): Promise<ICancelReply> {
  return requestAPI<ICancelReply>(`jobs/${encodeURIComponent(id)}/cancel`, {
    method: 'POST',
    body: JSON.stringify({ reason: 'cancelled from the Burst sidebar' })
  });
}
