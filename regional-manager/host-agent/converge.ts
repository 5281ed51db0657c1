// What a host agent does to bring its guests to its assignments, decided as a plain function
// of what is assigned and what runs. A guest is started or stopped only when what its
// assignment asks changed (or the agent has not acted on it yet): the agent does not fight a
// guest that stopped by itself; its manager hears of it and decides.

import type { HostAssignment } from "../../schemas/hosts.ts";
import type { InstanceState } from "../compute/types.ts";

export type ConvergeAction =
  | { kind: "boot"; instanceId: string; assignment: HostAssignment }
  /** The manager recreates the instance (a new generation): its guest goes, a new one boots. */
  | { kind: "recreate"; instanceId: string; assignment: HostAssignment }
  | { kind: "start"; instanceId: string; generation: number }
  | { kind: "stop"; instanceId: string; generation: number }
  | { kind: "set-metadata"; instanceId: string; metadata: Record<string, string> }
  | { kind: "remove"; instanceId: string }
  /** The guest is already as asked (re-adopted): only remember that it was. */
  | { kind: "adopt"; instanceId: string; desired: HostAssignment["desired"]; generation: number };

export interface ConvergeInput {
  assignments: readonly HostAssignment[];
  /** The guests the driver knows. */
  guests: readonly { instanceId: string; state: InstanceState; metadata: Record<string, string> }[];
  /** Instances being prepared (image on its way) or that failed before the driver knew them. */
  preparing: ReadonlySet<string>;
  /** What each assignment last asked that the agent acted on. */
  lastDesired: ReadonlyMap<string, HostAssignment["desired"]>;
  /** The generation each guest was booted (or adopted) at. */
  generations: ReadonlyMap<string, number>;
}

const ACTIVE: readonly InstanceState[] = ["starting", "running", "ready"];

function sameValues(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

export function planConvergence(input: ConvergeInput): ConvergeAction[] {
  const actions: ConvergeAction[] = [];
  const guests = new Map(input.guests.map((guest) => [guest.instanceId, guest]));
  const assigned = new Set<string>();
  for (const assignment of input.assignments) {
    const id = assignment.instance_id;
    assigned.add(id);
    const guest = guests.get(id);
    const asked = input.lastDesired.get(id);
    if (!guest) {
      // A preparation in flight, or one that failed, is left alone: the manager sees its state.
      if (assignment.desired === "running" && !input.preparing.has(id)) {
        actions.push({ kind: "boot", instanceId: id, assignment });
      }
      continue;
    }
    const generation = input.generations.get(id);
    if (generation !== undefined && generation < assignment.generation) {
      actions.push({ kind: "recreate", instanceId: id, assignment });
      continue;
    }
    if (!sameValues(guest.metadata, assignment.metadata)) {
      actions.push({ kind: "set-metadata", instanceId: id, metadata: assignment.metadata });
    }
    if (asked === assignment.desired) continue;
    const active = ACTIVE.includes(guest.state);
    const { generation: current } = assignment;
    if (assignment.desired === "running" && !active)
      actions.push({ kind: "start", instanceId: id, generation: current });
    else if (assignment.desired === "stopped" && active)
      actions.push({ kind: "stop", instanceId: id, generation: current });
    else
      actions.push({
        kind: "adopt",
        instanceId: id,
        desired: assignment.desired,
        generation: assignment.generation,
      });
  }
  // Guests (and preparations) of instances not assigned here any more: stale, so removed.
  for (const guest of input.guests) {
    if (!assigned.has(guest.instanceId)) actions.push({ kind: "remove", instanceId: guest.instanceId });
  }
  for (const id of input.preparing) {
    if (!assigned.has(id) && !guests.has(id)) actions.push({ kind: "remove", instanceId: id });
  }
  return actions;
}
