/**
 * A service cannot start because of how it was set up (an unsafe data dir, a weak or wrong
 * secret): the message says what and how to fix it, so the CLI prints it alone, without a stack.
 */
export class ConfigurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigurationError";
  }
}
