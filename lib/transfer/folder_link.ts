/**
 * Folders and symlinks offered by the sender: one answer each, no data. A folder is created
 * (or an existing one kept); a link is created only when it points inside the receiving
 * folder through the links already there (`link_policy.ts`).
 *
 * @module
 */

import { quote } from "../log.ts";
import { resolveLinkTarget } from "./link_policy.ts";
import {
  encodeRefusal,
  encodeText,
  EntryKind,
  type Offer,
  Reason,
  TransferFrame,
} from "./protocol.ts";
import { checkLinkTarget, findFreeName, resolveInside } from "./safe_path.ts";
import { offerComponents, relName } from "./offer_policy.ts";
import { Refusal, toRefusal } from "./refusal.ts";
import type { ReceiveContext } from "./receive_context.ts";

/**
 * Creates the folder or symlink of `offer` and resolves its answer (Confirm with the stored
 * path, or Reject), already counted and logged.
 */
export async function receiveFolderOrLink(
  ctx: ReceiveContext,
  offer: Offer,
): Promise<{ type: number; payload: Uint8Array }> {
  try {
    const components = offerComponents(offer);
    const stored = offer.kind === EntryKind.Directory
      ? await makeDir(ctx, offer, components)
      : await makeLink(ctx, offer, components);
    ctx.summary.confirmed++;
    ctx.log?.debug(
      `created ${offer.kind === EntryKind.Directory ? "folder" : "link"} ${quote(stored)}`,
    );
    return { type: TransferFrame.Confirm, payload: encodeText(stored) };
  } catch (error) {
    const refusal = toRefusal(error);
    ctx.refused(offer, refusal, { failed: false });
    return { type: TransferFrame.Reject, payload: encodeRefusal(refusal) };
  }
}

async function makeDir(ctx: ReceiveContext, offer: Offer, components: string[]): Promise<string> {
  const where = await resolveInside(ctx.settings.dir, components, {
    createParents: true,
    knownDirs: ctx.knownDirs,
    createdDirs: ctx.createdDirs,
  });
  if (where.existing === null) {
    await Deno.mkdir(where.path, { mode: (offer.mode & 0o777) | 0o700 });
    // Made here, so empty: the names of its files need no look-up (see offer_policy.ts).
    ctx.createdDirs.add(where.path);
  } else if (!where.existing.isDirectory || where.existing.isSymlink) {
    throw new Refusal(Reason.Exists, `${quote(offer.path)} exists and is not a folder`);
  }
  return components.join("/");
}

async function makeLink(ctx: ReceiveContext, offer: Offer, components: string[]): Promise<string> {
  const { dir, overwrite, rename } = ctx.settings;
  checkLinkTarget(offer.path, offer.target);
  const where = await resolveInside(dir, components, {
    createParents: true,
    knownDirs: ctx.knownDirs,
    createdDirs: ctx.createdDirs,
  });
  let name = where.name;
  let replace = false;
  if (where.existing !== null) {
    if (overwrite && !where.existing.isDirectory) {
      replace = true;
    } else if (rename) {
      name = await findFreeName(where.dir, where.name);
    } else {
      throw new Refusal(Reason.Exists, `${quote(offer.path)} exists`);
    }
  }
  // Where it points, through the links already in the folder and itself: inside, or refused.
  const path = relName(components, name).split("/");
  resolveLinkTarget(dir, { path, target: offer.target });
  if (replace) await Deno.remove(where.path);
  await Deno.symlink(offer.target, `${where.dir}/${name}`);
  return relName(components, name);
}
