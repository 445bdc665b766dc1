/** Typed errors of the client API: the gateway can tell bad input from a missing session. */
export class InvalidSessionInputError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`invalid ${field}: ${reason}`);
    this.name = 'InvalidSessionInputError';
  }
}

export class ConnectionOwnershipError extends Error {
  constructor(
    readonly connectionId: string,
    readonly field: 'uid',
  ) {
    super(`connection ${connectionId} is a live session of another ${field}`);
    this.name = 'ConnectionOwnershipError';
  }
}
