/**
 * The SOCKS5 handshake, one function per phase: the version byte, the method negotiation,
 * username/password authentication (RFC 1929) and the request. Each reads through the
 * connection's `BufferedReader`, so how the client splits its bytes does not matter,
 * and each failure sends the answer the RFC asks for.
 *
 * @module
 */

import { ProtocolError, UnexpectedEofError } from "../net/errors.ts";
import { writeAll } from "../net/write_all.ts";
import {
  AddressTypeError,
  AuthStatus,
  Command,
  COMMAND_NAMES,
  hex,
  Method,
  readAddress,
  Reply,
  type SocksAddress,
  Version,
} from "./protocol.ts";
import { quote } from "../log.ts";
import { LoginGuard } from "./login_guard.ts";
import { type ClientContext, fail, formatDestination } from "./client_context.ts";

/** A SOCKS5 request after the handshake. */
export interface Socks5Request {
  /** CMD: 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE. */
  command: number;
  /** DST.ADDR and DST.PORT. */
  destination: SocksAddress;
}

/**
 * Phase 1: the version byte. 5 continues with the method negotiation; 4 is SOCKS4/4a, served
 * only when no users are configured; anything else closes the connection (there is no reply
 * format for an unknown version).
 */
export async function readGreeting(ctx: ClientContext): Promise<number> {
  const version = await ctx.reader.readU8();
  if (version === Version.Socks5 || version === Version.Socks4) return version;
  throw new ProtocolError(`bad version 0x${hex(version)}, closed`);
}

/**
 * Phase 2: `NMETHODS | METHODS`. With users configured only username/password is acceptable,
 * otherwise only no-auth; when the client offers neither, the answer is 0xFF and the
 * connection is closed (RFC 1928 section 3).
 */
export async function negotiateMethod(ctx: ClientContext): Promise<void> {
  const { reader, conn, opts } = ctx;
  const count = await reader.readU8();
  if (count === 0) {
    await writeAll(conn, new Uint8Array([Version.Socks5, Method.NoAcceptableMethods]));
    throw new ProtocolError("greeting offers no methods");
  }
  const methods = await reader.readExact(count, 255);
  const needAuth = opts.users !== undefined && opts.users.size > 0;
  const wanted = needAuth ? Method.UsernamePassword : Method.NoAuthenticationRequired;
  if (!methods.includes(wanted)) {
    await writeAll(conn, new Uint8Array([Version.Socks5, Method.NoAcceptableMethods]));
    throw new ProtocolError(
      `no acceptable method: client offers [${[...methods].map(hex).join(",")}], ` +
        `server needs 0x${hex(wanted)}`,
    );
  }
  await writeAll(conn, new Uint8Array([Version.Socks5, wanted]));
  if (needAuth) await authenticate(ctx);
}

/**
 * Phase 3 (RFC 1929): `VER=1 | ULEN | UNAME | PLEN | PASSWD`, answered `VER=1 | STATUS`. A
 * wrong user or password gets status 1 and the connection is closed, and counts against the
 * client's source in the server's {@linkcode LoginGuard}; a source locked out by too many
 * failures gets status 1 without a look at the password (and its log line only at debug
 * level: the lockout was logged once when it began). The user name is peer-supplied: it is
 * logged quoted.
 */
export async function authenticate(ctx: ClientContext): Promise<void> {
  const { reader, conn, opts, logins } = ctx;
  const version = await reader.readU8();
  if (version !== Version.UserPassAuth) {
    await writeAll(conn, new Uint8Array([Version.UserPassAuth, AuthStatus.Failure]));
    throw new ProtocolError(`bad authentication version 0x${hex(version)}`);
  }
  const name = await reader.readExact(await reader.readU8(), 255);
  const password = await reader.readExact(await reader.readU8(), 255);
  const source = LoginGuard.source(conn.remoteAddr.hostname);
  if (logins.locked(source)) {
    ctx.record.quiet = true;
    await writeAll(conn, new Uint8Array([Version.UserPassAuth, AuthStatus.Failure]));
    throw new ProtocolError(
      `login refused for user ${quote(name)}: too many failed logins from ${source}`,
    );
  }
  if (!opts.users!.check(name, password)) {
    if (logins.fail(source)) {
      opts.logger?.warn(
        `${source}: ${opts.authMaxFailures} failed logins within ` +
          `${seconds(opts.authFailureWindowMs)}; refusing its logins for ` +
          `${seconds(opts.authLockoutMs)}`,
      );
    }
    await writeAll(conn, new Uint8Array([Version.UserPassAuth, AuthStatus.Failure]));
    throw new ProtocolError(`authentication failed for user ${quote(name)}`);
  }
  ctx.record.user = new TextDecoder().decode(name);
  await writeAll(conn, new Uint8Array([Version.UserPassAuth, AuthStatus.Success]));
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))}s`;
}

/**
 * Phase 4: `VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT`. An unknown or disabled command gets
 * 0x07, an unknown address type 0x08, a version other than 5 a general failure.
 */
export async function readRequest(ctx: ClientContext): Promise<Socks5Request> {
  const { reader, opts, record } = ctx;
  const version = await reader.readU8();
  const command = await reader.readU8();
  await reader.readU8(); // RSV
  if (version !== Version.Socks5) {
    return await fail(ctx, {
      reply: Reply.GeneralFailure,
      why: `bad request version 0x${hex(version)}`,
    });
  }
  record.command = COMMAND_NAMES[command] ?? `command 0x${hex(command)}`;
  const enabled = command === Command.Connect ||
    (command === Command.Bind && opts.allowBind) ||
    (command === Command.UdpAssociate && opts.allowUdp);
  if (!enabled) {
    const why = COMMAND_NAMES[command] ? "command disabled" : "unknown command";
    return await fail(ctx, { reply: Reply.CommandNotSupported, why: why });
  }
  let destination: SocksAddress;
  try {
    destination = await readAddress(reader);
  } catch (error) {
    if (error instanceof AddressTypeError) {
      return await fail(ctx, { reply: Reply.AddressTypeNotSupported, why: error.message });
    }
    if (error instanceof ProtocolError && !(error instanceof UnexpectedEofError)) {
      return await fail(ctx, { reply: Reply.GeneralFailure, why: error.message });
    }
    throw error;
  }
  record.destination = formatDestination(destination);
  return { command, destination };
}
