/** Why a JSON route refused a body it could not use: a fixed few, each one metric series. */
export type UnusableBody = 'body_too_large' | 'invalid_body';
