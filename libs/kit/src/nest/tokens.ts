export const LOGGER = Symbol('parley:logger');
export const KIT_OPTIONS = Symbol('parley:kit-options');
export const REDIS = Symbol('parley:redis');
