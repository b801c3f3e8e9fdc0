/** Upper bounds keep one bad producer from pushing megabytes of text through every stage. */
export const LIMITS = {
  textChars: 4_000,
  deltaChars: 2_000,
  reasonChars: 200,
  errorChars: 1_000,
  personaChars: 4_000,
  historyMessages: 500,
} as const;
