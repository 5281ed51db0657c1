// Whether a program can be run by name: the PATH lookup both the CLI's prerequisites and a
// manager's namespace host need, without starting a shell.
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

export function isExecutableOnPath(tool: string, path = process.env.PATH ?? ""): boolean {
  return path
    .split(delimiter)
    .filter(Boolean)
    .some((dir) => {
      try {
        accessSync(join(dir, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
}
