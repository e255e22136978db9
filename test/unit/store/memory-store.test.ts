import { MemoryStore } from '../../../src/store/memory.ts';
import { describeStoreConformance } from './conformance.ts';

describeStoreConformance('memory', async () => new MemoryStore());
