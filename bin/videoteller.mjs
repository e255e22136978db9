#!/usr/bin/env node
// The `videoteller` command: runs bin/videoteller.ts through tsx (TypeScript, no build step).
import { register } from 'tsx/esm/api';

register();
await import('./videoteller.ts');
