import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { subjectTable, withSubjectTable } from '../src/subject-table.js';

const doc = readFileSync(new URL('../../../docs/architecture.md', import.meta.url), 'utf8');

describe('the subject table in docs/architecture.md', () => {
  it('is what libs/protocol generates (node scripts/subject-table.mjs)', () => {
    expect(doc).toBe(withSubjectTable(doc));
  });

  it('names who publishes and reads each channel, from STAGE_ACCESS', () => {
    const table = subjectTable();
    expect(table).toMatch(
      /`va\.v1\.sess\.<sid>\.reply\.deep` \| turnId, seq, delta, done \| data \| deep-responder \|/,
    );
    expect(table).toMatch(/`va\.v1\.sess\.<sid>\.control` \|[^|]+\| control \| turn-detector \| every stage \|/);
    expect(table).toMatch(/`va\.v1\.ctx\.get` \|[^|]+→[^|]+\| request \|/);
  });
});
